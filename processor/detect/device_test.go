package detect

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// pump is a device of six noisy metrics, one reading a second; from
// reading from to reading to, the first four move by shift spreads
// together.
func pump(n, from, to int, shift float64) []sensor.Reading {
	rng := rand.New(rand.NewPCG(7, 11))
	names := []string{"current", "flow", "pressure", "vibration", "temperature", "voltage"}
	t0 := time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC)
	out := make([]sensor.Reading, n)
	for i := range out {
		m := map[string]float64{}
		for j, name := range names {
			v := 10*float64(j+1) + rng.NormFloat64()
			if i >= from && i < to && j < 4 {
				v += shift * float64(1-2*(j%2)) // two rise, two fall
			}
			m[name] = v
		}
		out[i] = sensor.Reading{DeviceID: "pump-1", Site: "plant", TS: t0.Add(time.Duration(i) * time.Second), Metrics: m}
	}
	return out
}

// Four metrics each 2 spreads off, together: one device alert that opens during the fault, stays open while it lasts,
// resolves after it, and names the four metrics.
func TestDeviceAlertLastsAsLongAsTheFault(t *testing.T) {
	const from, to = 600, 900
	rs := pump(1200, from, to, 2)
	d := New(DefaultConfig())
	var opens, resolves []sensor.Alert
	for i := range rs {
		evs, _ := d.Observe(&rs[i], nil, nil)
		for _, e := range evs {
			if e.Kind != KindDevice {
				require.Less(t, i, from, "a series alert during the fault: %s", e.Message)
				continue
			}
			if e.State == sensor.StateOpen {
				opens = append(opens, e)
			} else {
				resolves = append(resolves, e)
			}
		}
	}
	require.Len(t, opens, 1, "one device alert")
	require.Len(t, resolves, 1)
	o, r := opens[0], resolves[0]
	t.Logf("opened %s after the fault's start, resolved %s after its end: %s", o.StartedAt.Sub(rs[from].TS), r.ResolvedAt.Sub(rs[to].TS), o.Message)
	require.True(t, !o.StartedAt.Before(rs[from].TS) && o.StartedAt.Before(rs[from+60].TS), "opens within a minute of the onset")
	require.True(t, !r.ResolvedAt.Before(rs[to].TS) && r.ResolvedAt.Before(rs[to+60].TS), "resolves within a minute after the fault ends, not before")
	require.Equal(t, o.AlertID, r.AlertID)
	require.Len(t, o.Contributors, deviceContributors)
	for _, c := range o.Contributors {
		require.Contains(t, []string{"current", "flow", "pressure", "vibration"}, c.Metric)
		require.Greater(t, c.Share, 0.1)
	}
	require.Contains(t, o.Message, o.Contributors[0].Metric)
	require.Equal(t, o.Contributors[0].Metric, o.Metric)

	// The same readings without device scoring: no single reading stands
	// out; each metric's own sustained-deviation scorer finds the fault
	// later than the device score did, one alert per metric.
	cfg := DefaultConfig()
	cfg.DeviceZ = 0
	d = New(cfg)
	var series []sensor.Alert
	for i := range rs {
		evs, _ := d.Observe(&rs[i], nil, nil)
		for _, e := range evs {
			if e.State == sensor.StateOpen && i >= from && i < to {
				require.Equal(t, KindSustained, e.Kind, "reading %d: %s", i, e.Message)
				series = append(series, e)
			}
		}
	}
	require.Greater(t, len(series), 1)
	require.True(t, series[0].StartedAt.After(o.StartedAt), "the device alert is first: %s, then %s", o.StartedAt, series[0].StartedAt)
}

// A device whose metrics stay normal raises no device alert, and a device
// of one metric has no device score.
func TestNoDeviceAlertOnNormalData(t *testing.T) {
	rs := pump(5000, 0, 0, 0)
	d := New(DefaultConfig())
	for i := range rs {
		evs, _ := d.Observe(&rs[i], nil, nil)
		for _, e := range evs {
			require.NotEqual(t, KindDevice, e.Kind, "reading %d: %s", i, e.Message)
		}
	}
	s, open := d.DeviceScore("pump-1")
	require.False(t, open)
	require.Less(t, s, DefaultConfig().OpenScore)

	for i := range 500 {
		d.Score("single", "x", rs[i].TS, rs[i].Metrics["flow"])
	}
	s, open = d.DeviceScore("single")
	require.Zero(t, s)
	require.False(t, open)
}

// A reading that lacks one of the device's metrics now and then leaves the
// device's record alone; a set of metrics that lasts starts it over, and
// an open device alert then resolves with a resolve event, never silently.
func TestDeviceMetricSetChanges(t *testing.T) {
	const from = 600
	rs := pump(1000, from, 1000, 2)
	d := New(DefaultConfig())
	var opened sensor.Alert
	for i := range rs[:700] {
		r := rs[i]
		if i%7 == 3 {
			// a reading without its voltage
			r.Metrics = maps.Clone(r.Metrics)
			delete(r.Metrics, "voltage")
		}
		evs, _ := d.Observe(&r, nil, nil)
		for _, e := range evs {
			if e.Kind == KindDevice {
				require.Equal(t, sensor.StateOpen, e.State, "reading %d: %s", i, e.Message)
				opened = e
			}
		}
	}
	require.NotEmpty(t, opened.AlertID, "the device alert opened although some readings lacked a metric")
	_, open := d.DeviceScore("pump-1")
	require.True(t, open)

	// From now on the pump reports without its voltage.
	var resolved []sensor.Alert
	for i := 700; i < len(rs); i++ {
		r := rs[i]
		r.Metrics = maps.Clone(r.Metrics)
		delete(r.Metrics, "voltage")
		evs, _ := d.Observe(&r, nil, nil)
		for _, e := range evs {
			if e.Kind == KindDevice {
				resolved = append(resolved, e)
			}
		}
	}
	require.Len(t, resolved, 1)
	require.Equal(t, sensor.StateResolved, resolved[0].State)
	require.Equal(t, opened.AlertID, resolved[0].AlertID)
	require.Contains(t, resolved[0].Message, "set of metrics changed")
	require.Equal(t, 0, d.OpenAlerts(), "no alert left open")
	_, open = d.DeviceScore("pump-1")
	require.False(t, open)
}

// The device alert waits until its metrics' references have learned over
// their whole memory (1/-detect.alpha readings, at least 150 device
// scores): until then the device has no score, and a joint fault just
// after opens it. (A fault that starts earlier is learned as the device's
// normal, as every baseline learns what it sees while it warms up.)
func TestDeviceAlertWaitsForTheReferencesMemory(t *testing.T) {
	cfg := DefaultConfig()
	learned := cfg.Warmup + int(math.Round(1/cfg.AlphaMin)) // the series' warm-up, then 200 device scores
	from := learned + 10
	rs := pump(900, from, 900, 2)
	d := New(cfg)
	opened := -1
	for i := range rs {
		evs, _ := d.Observe(&rs[i], nil, nil)
		if s, _ := d.DeviceScore("pump-1"); i < learned {
			require.Zero(t, s, "reading %d: no device score yet", i)
		}
		for _, e := range evs {
			if e.Kind == KindDevice && e.State == sensor.StateOpen && opened < 0 {
				opened = i
			}
		}
	}
	require.GreaterOrEqual(t, opened, from)
	require.Less(t, opened, from+60, "opens within a minute of the onset")
}

// motor is a device of three metrics read once a minute for three days,
// each noise around its own level; from reading at, for 30 readings, the
// metrics named in rise move up by 4 of their spreads.
func motor(seed uint64, at int, rise ...string) []sensor.Reading {
	rng := rand.New(rand.NewPCG(seed, 5))
	names := []string{"current", "temperature", "vibration"}
	t0 := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
	out := make([]sensor.Reading, 3*1440)
	for i := range out {
		m := map[string]float64{}
		for j, name := range names {
			v := 10*float64(j+1) + rng.NormFloat64()
			if i >= at && i < at+30 && slices.Contains(rise, name) {
				v += 4
			}
			m[name] = v
		}
		out[i] = sensor.Reading{DeviceID: "motor-1", Site: "plant", TS: t0.Add(time.Duration(i) * time.Minute), Metrics: m}
	}
	return out
}

// TestMetricsMoveTogether: while all of a motor's metrics rise by 4
// spreads at once, its series learn that the device moves as a whole (so
// a burst of theirs is left to the device score) on most readings; while
// only the current rises they hardly do, nor on ordinary readings.
func TestMetricsMoveTogether(t *testing.T) {
	const at = 2*1440 + 600
	share := func(seed uint64, rise ...string) (before, during float64) {
		d := New(DefaultConfig())
		var out []sensor.Alert
		nb, nd := 0, 0
		for i, r := range motor(seed, at, rise...) {
			out, _ = d.Observe(&r, out[:0], nil)
			if !d.series[seriesKey{"motor-1", "current"}].together {
				continue
			}
			switch {
			case i >= 1440 && i < at:
				nb++
			case i >= at && i < at+30:
				nd++
			}
		}
		return float64(nb) / float64(at-1440), float64(nd) / 30
	}
	for seed := range uint64(5) {
		before, joint := share(seed, "current", "temperature", "vibration")
		_, alone := share(seed, "current")
		t.Logf("seed %d: together on %.3f of ordinary readings, %.2f of a joint rise, %.2f of the current's rise alone", seed, before, joint, alone)
		require.Less(t, before, 0.05, "seed %d", seed)
		require.Greater(t, joint, 0.5, "seed %d", seed)
		require.Less(t, alone, 0.1, "seed %d", seed)
	}
}
