package incident

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func alert(site, device, metric, kind, state string, ts time.Time) sensor.Alert {
	started := ts
	if state == sensor.StateResolved {
		started = ts.Add(-time.Second)
	}
	return sensor.Alert{AlertID: sensor.AlertID(device, metric, started), DeviceID: device, Site: site, Metric: metric,
		Kind: kind, State: state, TS: ts, StartedAt: started}
}

// summary renders decisions as "pub|sup device kind state" lines.
func summary(out []Out) []string {
	var s []string
	for _, o := range out {
		verb := "pub"
		if o.Suppressed {
			verb = "sup"
		}
		s = append(s, fmt.Sprintf("%s %s %s %s", verb, o.Alert.DeviceID, o.Alert.Kind, o.Alert.State))
	}
	return s
}

func TestOutageIsOneIncident(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s1", Partition: 0, Devices: 6}, t0)
	g.Census(Census{Site: "s1", Partition: 1, Devices: 4}, t0)
	var out []Out
	// Six of ten devices resume after a silence, each with an open and a
	// resolve gap event on two metrics, within three seconds.
	for i := range 6 {
		now := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		dev := fmt.Sprintf("d%d", i)
		for _, m := range []string{"temperature", "humidity"} {
			out = g.Observe(alert("s1", dev, m, kindGap, sensor.StateOpen, now), Ref{0, int64(10*i + 1)}, now, out)
			out = g.Observe(alert("s1", dev, m, kindGap, sensor.StateResolved, now.Add(time.Second)), Ref{0, int64(10*i + 2)}, now, out)
		}
		if i < 5 {
			require.Empty(t, out, "five of ten devices are not more than half")
			require.Equal(t, int64(1), g.Oldest()[0], "nothing past the first held alert may be committed")
		}
	}
	require.Equal(t, "pub _site outage open", summary(out)[0])
	require.Len(t, out, 1+6*4)
	for _, o := range out[1:] {
		require.True(t, o.Suppressed, "no device gap alert is published inside the outage")
		require.Equal(t, out[0].Alert.AlertID, o.Alert.IncidentID)
	}
	ev := out[0].Alert
	require.Equal(t, SiteDevice, ev.DeviceID)
	require.Equal(t, 6, ev.MemberCount)
	require.Equal(t, []string{"d0", "d1", "d2", "d3", "d4", "d5"}, ev.Members)
	require.Equal(t, sensor.SeverityCritical, ev.Severity)
	require.Contains(t, ev.Message, "6 of 10 devices")
	require.Zero(t, g.Held())
	require.Empty(t, g.Oldest())

	// A late member joins the open incident.
	now := t0.Add(10 * time.Second)
	out = g.Observe(alert("s1", "d7", "temperature", kindGap, sensor.StateOpen, now), Ref{0, 99}, now, nil)
	require.Equal(t, []string{"sup d7 gap open"}, summary(out))
	// Other kinds pass.
	out = g.Observe(alert("s1", "d8", "temperature", "spike", sensor.StateOpen, now), Ref{0, 100}, now, nil)
	require.Equal(t, []string{"pub d8 spike open"}, summary(out))

	// A minute without members closes it, with the count of grouped alerts.
	require.Empty(t, g.Tick(now.Add(59*time.Second), nil))
	out = g.Tick(now.Add(time.Minute), nil)
	require.Equal(t, []string{"pub _site outage resolved"}, summary(out))
	require.Equal(t, ev.AlertID, out[0].Alert.AlertID)
	require.Equal(t, 6*2+1, out[0].Alert.Suppressed, "alerts, not events")
	require.Equal(t, 7, out[0].Alert.MemberCount)
	require.NotNil(t, out[0].Alert.ResolvedAt)
	require.Zero(t, g.Open())

	// The late member's resolve stays linked after the incident closed.
	late := alert("s1", "d7", "temperature", kindGap, sensor.StateResolved, now.Add(time.Second))
	late.AlertID = sensor.AlertID("d7", "temperature", now)
	out = g.Observe(late, Ref{0, 101}, now.Add(61*time.Second), nil)
	require.Equal(t, []string{"sup d7 gap resolved"}, summary(out))
}

func TestOneSilentDeviceRaisesItsGap(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s1", Partition: 0, Devices: 20}, t0)
	out := g.Observe(alert("s1", "d1", "temperature", kindGap, sensor.StateOpen, t0), Ref{2, 7}, t0, nil)
	out = g.Observe(alert("s1", "d1", "temperature", kindGap, sensor.StateResolved, t0.Add(time.Second)), Ref{2, 8}, t0.Add(time.Second), out)
	require.Empty(t, out, "held while it may still be part of an outage")
	require.Equal(t, map[int]int64{2: 7}, g.Oldest())
	require.Empty(t, g.Tick(t0.Add(9*time.Second), nil))
	out = g.Tick(t0.Add(10*time.Second), nil)
	require.Equal(t, []string{"pub d1 gap open"}, summary(out), "released after the hold, open before resolve")
	out = g.Tick(t0.Add(11*time.Second), nil)
	require.Equal(t, []string{"pub d1 gap resolved"}, summary(out))
	require.Empty(t, g.Oldest())
	require.Zero(t, g.Open())
}

func TestSiteWideRiseIsOneIncident(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s1", Partition: 0, Devices: 8}, t0)
	g.Census(Census{Site: "s2", Partition: 0, Devices: 8}, t0)
	var out []Out
	var ids []string
	for i := range 6 {
		now := t0.Add(time.Duration(i) * time.Second)
		a := alert("s1", fmt.Sprintf("d%d", i), "temperature", "shift", sensor.StateOpen, now)
		a.Severity = sensor.SeverityWarning
		ids = append(ids, a.AlertID)
		out = g.Observe(a, Ref{0, int64(i)}, now, out)
		// Another site's alerts on the same metric are not members.
		out = g.Observe(alert("s2", fmt.Sprintf("e%d", i), "temperature", "shift", sensor.StateOpen, now), Ref{0, int64(i)}, now, out)
	}
	require.Equal(t, []string{
		"pub d0 shift open", "pub e0 shift open", "pub d1 shift open", "pub e1 shift open",
		"pub d2 shift open", "pub e2 shift open", "pub d3 shift open", "pub e3 shift open",
		"pub d4 shift open", "pub _site site_wide open", "pub e4 shift open", "pub _site site_wide open",
		"sup d5 shift open", "sup e5 shift open",
	}, summary(out), "the first alerts go out at once; the fifth of eight devices makes the incident")
	inc := out[9].Alert
	require.Equal(t, "s1", inc.Site)
	require.Equal(t, "temperature", inc.Metric)
	require.Equal(t, []string{"d0", "d1", "d2", "d3", "d4"}, inc.Members)
	require.Equal(t, 2, g.Open())

	// Members resolve; the incident resolves with the last of them.
	now := t0.Add(time.Minute)
	out = nil
	for i, id := range ids {
		a := alert("s1", fmt.Sprintf("d%d", i), "temperature", "shift", sensor.StateResolved, now)
		a.AlertID = id
		out = g.Observe(a, Ref{0, int64(20 + i)}, now, out)
	}
	require.Equal(t, []string{
		"pub d0 shift resolved", "pub d1 shift resolved", "pub d2 shift resolved", "pub d3 shift resolved",
		"pub d4 shift resolved", "sup d5 shift resolved", "pub _site site_wide resolved",
	}, summary(out))
	require.Equal(t, 6, out[6].Alert.MemberCount)
	require.Equal(t, 1, out[6].Alert.Suppressed)
	require.Equal(t, 1, g.Open(), "s2's incident is still open")
}

func TestThresholds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		census   int // 0: none received
		silent   int
		incident bool
	}{
		{"half is not more than half", 10, 5, false},
		{"more than half", 10, 6, true},
		{"fewer than min devices", 6, 4, false},
		{"a small site never groups", 4, 4, false},
		{"no census: min devices", 0, 5, true},
		{"no census: below min devices", 0, 4, false},
		{"census lower than the silent devices", 3, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(DefaultConfig())
			if tc.census > 0 {
				g.Census(Census{Site: "s", Partition: 3, Devices: tc.census}, t0)
			}
			var out []Out
			for i := range tc.silent {
				out = g.Observe(alert("s", fmt.Sprintf("d%d", i), "temperature", kindGap, sensor.StateOpen, t0), Ref{0, int64(i)}, t0, out)
			}
			if tc.incident {
				require.Equal(t, "pub _site outage open", summary(out)[0])
			} else {
				require.Empty(t, out)
				require.Len(t, g.Tick(t0.Add(time.Hour), nil), tc.silent, "each device's gap published after the hold")
			}
		})
	}
}

func TestGapsOutsideTheWindowDoNotGroup(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s", Partition: 0, Devices: 8}, t0)
	var out []Out
	for i := range 6 { // one device every 20 s: never more than half in a minute
		now := t0.Add(time.Duration(i) * 20 * time.Second)
		out = g.Tick(now, out)
		out = g.Observe(alert("s", fmt.Sprintf("d%d", i), "temperature", kindGap, sensor.StateOpen, now), Ref{0, int64(i)}, now, out)
	}
	out = g.Tick(t0.Add(time.Hour), out)
	require.Len(t, out, 6)
	for _, o := range out {
		require.False(t, o.Suppressed)
		require.Equal(t, kindGap, o.Alert.Kind)
	}
}

func TestStaleCensusIsDropped(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s", Partition: 0, Devices: 100}, t0)
	g.Census(Census{Site: "s", Partition: 1, Devices: 8}, t0.Add(9*time.Minute))
	now := t0.Add(11 * time.Minute) // partition 0's census is stale: the site has 8 devices
	var out []Out
	for i := range 5 {
		out = g.Observe(alert("s", fmt.Sprintf("d%d", i), "temperature", kindGap, sensor.StateOpen, now), Ref{1, int64(i)}, now, out)
	}
	require.Equal(t, "pub _site outage open", summary(out)[0])
}

func TestPassThrough(t *testing.T) {
	g := New(DefaultConfig())
	site := alert("s", SiteDevice, OutageMetric, KindOutage, sensor.StateOpen, t0)
	ceiling := alert("s", "d1", "alert_ceiling", kindCeiling, sensor.StateOpen, t0)
	out := g.Observe(site, Ref{}, t0, nil)
	out = g.Observe(ceiling, Ref{}, t0, out)
	require.Equal(t, []string{"pub _site outage open", "pub d1 ceiling open"}, summary(out))
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.Validate())
	for _, f := range []func(*Config){
		func(c *Config) { c.Window = 0 },
		func(c *Config) { c.Share = 1 },
		func(c *Config) { c.MinDevices = 1 },
		func(c *Config) { c.Hold = -1 },
		func(c *Config) { c.MaxMembers = 0 },
	} {
		c := DefaultConfig()
		f(&c)
		require.Error(t, c.Validate())
	}
}

// A backlog processed after an outage of the pipeline arrives within
// seconds: what started minutes apart, in the readings' time, is not one
// incident.
func TestGroupingUsesTheReadingsTime(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s", Partition: 0, Devices: 8}, t0)
	var out []Out
	for i := range 8 { // arriving 10 ms apart, started 2 minutes apart
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		started := t0.Add(time.Duration(i) * 2 * time.Minute)
		out = g.Observe(alert("s", fmt.Sprintf("d%d", i), "temperature", kindGap, sensor.StateOpen, started), Ref{0, int64(i)}, now, out)
		out = g.Observe(alert("s", fmt.Sprintf("e%d", i), "humidity", "zscore", sensor.StateOpen, started), Ref{0, int64(i)}, now, out)
	}
	out = g.Tick(t0.Add(time.Minute), out)
	require.Len(t, out, 16)
	for _, o := range out {
		require.False(t, o.Suppressed)
		require.NotEqual(t, SiteDevice, o.Alert.DeviceID)
	}
	require.Zero(t, g.Open())

	// An outage in the readings' time still groups, however late it arrives;
	// a gap long after it is not a member.
	g = New(DefaultConfig())
	g.Census(Census{Site: "s", Partition: 0, Devices: 8}, t0)
	out = nil
	for i := range 5 {
		out = g.Observe(alert("s", fmt.Sprintf("d%d", i), "temperature", kindGap, sensor.StateOpen, t0.Add(time.Duration(i)*time.Second)), Ref{0, int64(i)}, t0, out)
	}
	require.Equal(t, "pub _site outage open", summary(out)[0])
	out = g.Observe(alert("s", "d7", "temperature", kindGap, sensor.StateOpen, t0.Add(10*time.Minute)), Ref{0, 9}, t0.Add(time.Second), nil)
	require.Empty(t, out, "held: it may start an outage of its own")
	require.Equal(t, []string{"pub d7 gap open"}, summary(g.Tick(t0.Add(11*time.Second), nil)))
}

// Partitions run at their own pace: a member's resolve event may arrive
// before another member's open event. The incident still resolves.
func TestSiteWideMembersResolvedBeforeTheIncident(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s", Partition: 0, Devices: 8}, t0)
	var out []Out
	var ids []string
	for i := range 5 {
		a := alert("s", fmt.Sprintf("d%d", i), "temperature", "shift", sensor.StateOpen, t0)
		ids = append(ids, a.AlertID)
		out = g.Observe(a, Ref{i, 1}, t0, out)
		if i == 0 { // d0's partition is ahead: its alert resolved already
			r := a
			r.State, r.TS = sensor.StateResolved, t0.Add(30*time.Second)
			out = g.Observe(r, Ref{i, 2}, t0, out)
		}
	}
	require.Equal(t, "pub _site site_wide open", summary(out)[len(out)-1])
	for i := 1; i < 5; i++ {
		r := alert("s", fmt.Sprintf("d%d", i), "temperature", "shift", sensor.StateResolved, t0.Add(30*time.Second))
		r.AlertID = ids[i]
		out = g.Observe(r, Ref{i, 2}, t0.Add(time.Second), out)
	}
	require.Equal(t, "pub _site site_wide resolved", summary(out)[len(out)-1])
	require.Zero(t, g.Open())
}

// A second outage, later in the readings' time, while the first is still
// open on the wall clock (a backlog): the first closes before the second
// opens, so no incident is left open for ever.
func TestASecondOutageClosesTheFirst(t *testing.T) {
	g := New(DefaultConfig())
	g.Census(Census{Site: "s", Partition: 0, Devices: 8}, t0)
	var out []Out
	for _, start := range []time.Time{t0, t0.Add(time.Hour)} {
		for i := range 5 {
			out = g.Observe(alert("s", fmt.Sprintf("d%d", i), "temperature", kindGap, sensor.StateOpen, start), Ref{0, int64(i)}, t0, out)
		}
	}
	var incidents []string
	for _, o := range out {
		if o.Alert.DeviceID == SiteDevice {
			incidents = append(incidents, o.Alert.State+" "+o.Alert.StartedAt.Format(time.TimeOnly))
		}
	}
	require.Equal(t, []string{"open 12:00:00", "resolved 12:00:00", "open 13:00:00"}, incidents)
	require.Equal(t, 1, g.Open())
}
