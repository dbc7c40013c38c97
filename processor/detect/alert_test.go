package detect

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// spikes is noise with a spike about every gap readings from reading 300
// until reading until: the gaps vary by up to 30 %, as a flapping series'
// do (spikes at a steady beat are a rhythm, which raises nothing once
// learned).
func spikes(n, gap, until int) []float64 {
	v := noise(n, 5, 20, 0.5)
	jitter := [...]float64{0, -0.3, 0.3, -0.2, 0.2}
	for i, j := 300, 0; i < until; i, j = i+gap+int(jitter[j%len(jitter)]*float64(gap)), j+1 {
		v[i] = 40
	}
	return v
}

// lastSpike is the index of the last spike spikes made.
func lastSpike(v []float64) int {
	for i := len(v) - 1; i >= 0; i-- {
		if v[i] == 40 {
			return i
		}
	}
	return -1
}

// A series that flaps (a spike every 40 s) raises one alert that stays
// open when -detect.reopen-within spans the quiet between them, and one
// alert per spike without it.
func TestReopenWithinMergesAFlappingSeries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxAlertsPerHour = 0
	values := spikes(800, 40, 700)
	last := lastSpike(values)
	require.Greater(t, len(opened(feed(cfg, values))), 5, "without merging: an alert per spike")

	cfg.ReopenWithin = time.Minute
	a := feed(cfg, values)
	require.Len(t, opened(a), 1, "one alert for the flapping series: %v", a)
	require.Equal(t, t0.Add(300*time.Second), a[0].StartedAt)
	require.Len(t, a, 2, "opened once, resolved once: %v", a)
	require.Equal(t, sensor.StateResolved, a[1].State)
	// After the last spike the alert went quiet soon and was published
	// resolved a minute of quiet later, resolved at that quiet.
	quiet := *a[1].ResolvedAt
	end := t0.Add(time.Duration(last) * time.Second)
	require.True(t, quiet.After(end) && quiet.Before(end.Add(10*time.Second)), "went quiet after the last spike at %d: %v", last, quiet)
	require.Equal(t, quiet.Add(time.Minute), a[1].TS, "published once the minute of quiet passed")
}

// Past its ceiling a device's alerts are held back; one summary alert opens
// with the first held back and resolves at the end of the hour with the
// count.
func TestCeilingHoldsBackAlertsAndSummarises(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxAlertsPerHour = 3
	values := spikes(2*3600, 60, 2*3600) // a spike about every minute
	a := feed(cfg, values)
	var series, summaries []sensor.Alert
	for _, e := range a {
		if e.Kind == KindCeiling {
			summaries = append(summaries, e)
		} else if e.State == sensor.StateOpen {
			series = append(series, e)
		}
	}
	require.NotEmpty(t, summaries)
	first := summaries[0]
	require.Equal(t, sensor.StateOpen, first.State)
	require.Equal(t, ceilingMetric, first.Metric)
	require.Contains(t, first.Message, "raised 3 alerts within an hour")
	require.Equal(t, sensor.StateResolved, summaries[1].State)
	require.Equal(t, first.AlertID, summaries[1].AlertID)
	require.Equal(t, t0.Add(300*time.Second+time.Hour), *summaries[1].ResolvedAt, "the hour from the first alert")
	require.Regexp(t, `^dev-1: [1-9][0-9]* alerts held back between`, summaries[1].Message)
	require.True(t, first.StartedAt.After(series[2].StartedAt), "the summary opens with the fourth alert")
	// Three alerts in the first hour, three again in the next.
	var firstHour int
	for _, e := range series {
		if e.StartedAt.Before(t0.Add(300*time.Second + time.Hour)) {
			firstHour++
		}
	}
	require.Equal(t, 3, firstHour)
	require.LessOrEqual(t, len(series), 6)
	for _, e := range a {
		if e.State == sensor.StateResolved && e.Kind != KindCeiling {
			require.True(t, containsID(series, e.AlertID), "a held-back alert is never resolved in public: %v", e)
		}
	}
}

func containsID(as []sensor.Alert, id string) bool {
	for _, a := range as {
		if a.AlertID == id {
			return true
		}
	}
	return false
}

// OpenAlerts counts the published alerts open now, muted ones not, as the
// events say, after every reading.
func TestOpenAlertsFollowsTheEvents(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxAlertsPerHour = 3
	d := New(cfg)
	a, b := spikes(3000, 37, 3000), spikes(3000, 53, 3000)
	open := map[string]bool{}
	for i := range a {
		r := sensor.Reading{DeviceID: "dev-1", Site: "s", TS: t0.Add(time.Duration(i) * time.Second), Metrics: map[string]float64{"a": a[i], "b": b[i]}}
		events, _ := d.Observe(&r, nil, nil)
		for _, e := range events {
			if e.Kind == KindCeiling {
				continue
			}
			if e.State == sensor.StateOpen {
				open[e.AlertID] = true
			} else {
				delete(open, e.AlertID)
			}
		}
		require.Equal(t, len(open), d.OpenAlerts(), "reading %d", i)
	}
}

func TestForgetDevices(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits = map[string]Limit{"temperature": {Min: -100, Max: 50}}
	d := New(cfg)
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, dev := range []string{"a", "b"} {
		r := sensor.Reading{DeviceID: dev, Site: "s", TS: ts, Metrics: map[string]float64{"temperature": 60, "humidity": 40}}
		out, _ := d.Observe(&r, nil, nil)
		require.Len(t, out, 1, "a limit alert opens at once")
	}
	require.Equal(t, 4, d.Series())
	require.Equal(t, 2, d.OpenAlerts())
	require.Equal(t, 2, d.ForgetDevices(map[string]bool{"a": true, "x": true}))
	require.Equal(t, 2, d.Series())
	require.Equal(t, 1, d.OpenAlerts())
}

// TestJumpAlertSaysItJumped: a jump from one reading to the next that
// stays inside the range a wide, slow swing gives the level is detected
// by its size against the usual step, and the alert says that, not that
// the value left a range it did not leave.
func TestJumpAlertSaysItJumped(t *testing.T) {
	v := make([]float64, 1200)
	for i := range v {
		v[i] = 50 + 10*math.Sin(2*math.Pi*float64(i)/200) + 0.01*math.Sin(float64(i)*1.7)
	}
	v[1000] += 4 // a step of about 4 where the usual one is at most 0.3
	o := opened(feed(DefaultConfig(), v))
	require.Len(t, o, 1, "one alert, for the jump")
	a := o[0]
	require.Equal(t, KindZScore, a.Kind)
	require.True(t, a.Value > a.ExpectedLow && a.Value < a.ExpectedHigh, "the value stays inside its range: %s", a.Message)
	require.Contains(t, a.Message, "jumped by +4", a.Message)
	require.Contains(t, a.Message, "times its usual step", a.Message)
	t.Log(a.Message)
}
