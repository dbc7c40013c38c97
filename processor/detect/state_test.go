package detect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// stateFleet is readings of four devices, two or three metrics each,
// every 30 s over four days: daily cycles, noise, spikes, a level shift, a
// stuck sensor, a fault of a whole device and gaps that, with a ceiling of
// one alert an hour, hold alerts back, so every part of the state is in
// use somewhere.
func stateFleet() []sensor.Reading {
	const n = 4 * 2880
	temp := noise(n, 11, 0, 0.4)
	hum := noise(n, 12, 50, 2)
	flow := noise(n, 13, 10, 0.3)
	var out []sensor.Reading
	for i := range n {
		ts := t0.Add(time.Duration(i) * 30 * time.Second)
		h := float64(ts.Hour()) + float64(ts.Minute())/60
		t := 20 + 4*math.Sin(2*math.Pi*h/24) + temp[i]
		if i%997 == 500 {
			t += 15 // spikes
		}
		if i > 6000 && i < 6400 {
			t += 5 // a level shift
		}
		hv := hum[i]
		if i > 4000 && i < 4100 {
			hv = 55 // stuck
		}
		if i%1500 < 20 && i > 3000 { // a gap now and then
			continue
		}
		out = append(out, sensor.Reading{DeviceID: "a", Site: "s1", TS: ts, Metrics: map[string]float64{"temperature": t, "humidity": hv}})
		f := flow[i]
		if i%300 == 150 {
			f += 8 // spikes
		}
		out = append(out, sensor.Reading{DeviceID: "b", Site: "s1", TS: ts, Metrics: map[string]float64{"flow": f, "pressure": 3 + flow[(i+7)%n]/10}})
		// d: three metrics that move together for a while, each by two
		// spreads: no series alert, one device alert.
		m := map[string]float64{"current": 8 + temp[(i*3)%n], "flow": 10 + hum[(i*5)%n]/2, "vibration": 1 + flow[(i*11)%n]}
		if i > 8000 && i < 8300 {
			m["current"] += 0.8
			m["flow"] -= 2
			m["vibration"] += 0.6
		}
		out = append(out, sensor.Reading{DeviceID: "d", Site: "s2", TS: ts.Add(2 * time.Second), Metrics: m})
		out = append(out, sensor.Reading{DeviceID: "c", Site: "s2", TS: ts.Add(time.Second), Metrics: map[string]float64{"level": float64(i % 400), "current": 5 + temp[(i*7)%n]}})
	}
	return out
}

type observed struct {
	alerts []sensor.Alert
	scores []float64
}

func observeAll(d *Detector, rs []sensor.Reading) observed {
	var o observed
	for i := range rs {
		o.alerts, o.scores = d.Observe(&rs[i], o.alerts, o.scores)
	}
	return o
}

func stateConfig() Config {
	cfg := DefaultConfig()
	cfg.MaxAlertsPerHour = 1
	cfg.ReopenWithin = 2 * time.Minute
	return cfg
}

// A detector restored from another's state at any point continues exactly
// as the other: the same alerts and scores on every later reading.
func TestRestoredStateContinuesExactly(t *testing.T) {
	rs := stateFleet()
	cfg := stateConfig()
	whole := observeAll(New(cfg), rs)
	require.NotEmpty(t, whole.alerts)
	kinds := map[string]bool{}
	for _, a := range whole.alerts {
		kinds[a.Kind] = true
	}
	t.Logf("alert kinds in the fleet: %v", kinds)
	require.True(t, kinds[KindCeiling] && kinds[KindStuck] && kinds[KindGap], "the fleet exercises the ceiling, stuck and gap alerts: %v", kinds)
	// d's device alert, held back by the ceiling its flow's alert filled,
	// is open during its fault (for at most an hour, 120 readings).
	inFault := slices.IndexFunc(rs, func(r sensor.Reading) bool { return r.DeviceID == "d" && r.TS.Sub(t0) >= 8060*30*time.Second })

	for _, cut := range []int{1, 50, 3000, 12007, 18000, 25001, inFault, len(rs) - 1} {
		first := New(cfg)
		before := observeAll(first, rs[:cut])
		if cut == inFault {
			require.True(t, first.devices["d"].alert.open, "d's device alert is open during its fault")
		}
		second := New(cfg)
		for _, dev := range []struct{ id, site string }{{"a", "s1"}, {"b", "s1"}, {"c", "s2"}, {"d", "s2"}} {
			st, n := first.AppendDeviceState(nil, dev.id, dev.site)
			if n == 0 {
				continue
			}
			got, err := second.RestoreDevice(dev.id, st)
			require.NoError(t, err)
			require.Equal(t, n, got)
		}
		require.Equal(t, first.Series(), second.Series())
		require.Equal(t, first.OpenAlerts(), second.OpenAlerts())
		after := observeAll(second, rs[cut:])
		require.Equal(t, append([]sensor.Alert{}, whole.alerts[len(before.alerts):]...), append([]sensor.Alert{}, after.alerts...), "alerts after a restore at reading %d", cut)
		require.Equal(t, whole.scores[len(before.scores):], after.scores, "scores after a restore at reading %d", cut)
	}
}

// Every field of a series survives the round trip: restored series equal
// the originals, field by field.
func TestStateRoundTripKeepsEveryField(t *testing.T) {
	rs := stateFleet()
	d := New(stateConfig())
	for i := range rs {
		d.Observe(&rs[i], nil, nil)
		if i%4001 != 4000 {
			continue
		}
		for _, dev := range []string{"a", "b", "c"} {
			st, _ := d.AppendDeviceState(nil, dev, "s")
			r := New(stateConfig())
			_, err := r.RestoreDevice(dev, st)
			require.NoError(t, err)
			for k, s := range d.series {
				if k.device != dev {
					continue
				}
				got := r.series[k]
				require.NotNil(t, got)
				require.True(t, reflect.DeepEqual(s, got), "series %v at reading %d:\n%+v\n%+v", k, i, *s, *got)
			}
			if b := d.budgets[dev]; b != nil {
				require.Equal(t, *b, *r.budgets[dev])
			}
			if v := d.devices[dev]; v != nil {
				require.True(t, reflect.DeepEqual(v, r.devices[dev]), "device %s at reading %d:\n%+v\n%+v", dev, i, *v, *r.devices[dev])
			}
			again, _ := r.AppendDeviceState(nil, dev, "s")
			require.Equal(t, st, again)
		}
	}
}

// The fields a series keeps, as StateVersion 5 encodes them. A change to
// the structs fails here: list the field in the state methods, bump
// StateVersion, and update this list.
func TestStateCoversTheSeriesLayout(t *testing.T) {
	fields := func(v any) string {
		tp := reflect.TypeOf(v)
		var names []string
		for i := range tp.NumField() {
			names = append(names, tp.Field(i).Name+" "+tp.Field(i).Type.String())
		}
		return strings.Join(names, ", ")
	}
	got := map[string]string{
		"Series":     fields(Series{}),
		"alertState": fields(alertState{}),
		"season":     fields(season{}),
		"extremes":   fields(extremes{}),
		"excursions": fields(excursions{}),
		"shapes":     fields(shapes{}),
		"budget":     fields(budget{}),
		"device":     fields(device{}),
	}
	want := map[string]string{
		"Series":     "cfg *detect.Config, n int64, mean float64, varc float64, last float64, raw float64, dvar float64, lastTS int64, stuckVal float64, prevLevel float64, alert detect.alertState, budget *detect.budget, season detect.season, extremes detect.extremes, shape detect.shapes, rn int64, rmean float64, rvar float64, v2z float32, v2 float32, v2m float32, v2v float32, s2 float32, s2m float32, s2v float32, smM float32, smV float32, lmean float32, lvar float32, lshort float32, lsvar float32, cadence float32, run int32, out int32, maxRun int32, quiet int32, long float32, rz float32, ev float32, tail [8]float32, onsetSec [6]uint32, smWait int16, v2armed bool, smArmed bool, inDevice bool, together bool, stuckRun bool, stuckSeen bool, moved bool, shifted bool, hasPrev bool, tailK int8, onsetI int8, onsetEdge [6]int8, repeats uint16",
		"device":     "set uint64, n int64, lmean float64, lvar float64, last float64, alert detect.alertState, contributors []sensor.Contributor, other int32",
		"alertState": "open bool, fall bool, pace bool, below int32, startedAt time.Time, id string, kind string, severity string, low float64, high float64, peak float64, quietSince int64, quietV float64, muted bool",
		"season":     "slot [96]float32, known [2]uint64, nknown int32, last float32, on bool, first int64, ref float64, sum float64, varRaw float64, varDeso float64, level float64, nlevel int64, hold int64",
		"extremes":   "first int64, lo float64, hi float64, mean float64, mlo float64, mhi float64, quiet2 float64, burst float64, moves [2]detect.excursions, started bool, rest int8",
		"excursions": "peak float64, top [2]float64, in bool, fired bool",
		"shapes":     "anchor float64, win [16]float32, cats [8][16]int16, count [8]uint8, mean float32, vr float32, short float32, svr float32, n int32, next uint8, full uint8, ncat uint8, armed bool",
		"budget":     "windowEnd time.Time, opened int32, heldBack int32, summaryOpen bool, summaryStart time.Time, summaryID string, site string",
	}
	require.Equal(t, want, got, "the series layout changed: encode the new fields in state.go and bump StateVersion (now %d)", StateVersion)
}

// A state of another version, or a damaged one, is refused and leaves the
// detector as it was; no input makes RestoreDevice panic.
func TestRestoreRefusesOtherVersionsAndDamage(t *testing.T) {
	rs := stateFleet()[:3000]
	d := New(stateConfig())
	observeAll(d, rs)
	st, n := d.AppendDeviceState(nil, "a", "s1")
	require.Equal(t, 2, n)
	require.EqualValues(t, StateVersion, StateVersionOf(st))

	other := slices.Clone(st)
	other[len(stateMagic)] = StateVersion + 1
	r := New(stateConfig())
	_, err := r.RestoreDevice("a", other)
	require.ErrorIs(t, err, ErrStateVersion)
	require.Zero(t, r.Series())

	for cut := range len(st) {
		_, err := r.RestoreDevice("a", st[:cut])
		require.Error(t, err, "truncated at %d", cut)
		require.Zero(t, r.Series())
	}
	_, err = r.RestoreDevice("a", append(slices.Clone(st), 0))
	require.Error(t, err)
	for i := len(stateMagic) + 1; i < len(st); i += 7 {
		bad := slices.Clone(st)
		bad[i] ^= 0xff
		_, _ = r.RestoreDevice("a", bad) // may decode to other numbers; must not panic
	}
	_, err = r.RestoreDevice("a", []byte("not a state"))
	require.ErrorIs(t, err, ErrStateVersion)

	// A device record listing more contributors than an alert may is
	// refused as a whole.
	dv := d.devices["a"]
	require.NotNil(t, dv, "device a has a device record")
	dv.contributors = make([]sensor.Contributor, sensor.MaxContributors+1)
	st, _ = d.AppendDeviceState(nil, "a", "s1")
	fresh := New(stateConfig())
	_, err = fresh.RestoreDevice("a", st)
	require.ErrorContains(t, err, "contributor count")
	require.Zero(t, fresh.Series())
}

// DeviceStates encodes several devices in one pass, each as
// AppendDeviceState does, and skips devices it has no series of.
func TestDeviceStates(t *testing.T) {
	d := New(stateConfig())
	observeAll(d, stateFleet()[:600])
	got := map[string][]byte{}
	d.DeviceStates(map[string]string{"a": "s1", "c": "s2", "nobody": "s9"}, func(dev string, st []byte, n int) {
		require.Equal(t, 2, n)
		got[dev] = slices.Clone(st)
	})
	require.Len(t, got, 2)
	for dev, site := range map[string]string{"a": "s1", "c": "s2"} {
		want, _ := d.AppendDeviceState(nil, dev, site)
		require.Equal(t, want, got[dev], dev)
	}
}

// The size of a checkpoint: bytes per series, for the docs and the bench.
func TestStateSize(t *testing.T) {
	d := New(stateConfig())
	observeAll(d, stateFleet())
	total, series := 0, 0
	for _, dev := range []string{"a", "b", "c"} {
		st, n := d.AppendDeviceState(nil, dev, "s1")
		total += len(st)
		series += n
	}
	per := total / series
	t.Logf("checkpoint: %d bytes per series", per)
	require.Less(t, per, 2048, fmt.Sprintf("%d bytes per series: within the detector's budget of 2 KiB", per))
}

// A record whose fields decode out of their range is refused as a whole:
// the sustained scorer's wait, and an onset time beyond 32 bits.
func TestRestoreRefusesFieldsOutOfRange(t *testing.T) {
	fresh := func(t *testing.T) (*Detector, *Series) {
		d := New(stateConfig())
		observeAll(d, stateFleet()[:600])
		for k, s := range d.series {
			if k.device == "a" {
				return d, s
			}
		}
		t.Fatal("no series of device a")
		return nil, nil
	}

	d, s := fresh(t)
	s.smWait = -1
	st, _ := d.AppendDeviceState(nil, "a", "s1")
	r := New(stateConfig())
	_, err := r.RestoreDevice("a", st)
	require.ErrorContains(t, err, "sustained scorer's wait out of range")
	require.Zero(t, r.Series())

	d, s = fresh(t)
	const marker = 0xFEDCBA98
	s.onsetSec[0] = marker
	st, _ = d.AppendDeviceState(nil, "a", "s1")
	from, to := binary.AppendVarint(nil, marker), binary.AppendVarint(nil, 1<<33)
	require.Len(t, to, len(from), "the same length keeps the rest of the record in place")
	require.Equal(t, 1, bytes.Count(st, from), "the marker once")
	i := bytes.Index(st, from)
	require.GreaterOrEqual(t, i, 0)
	copy(st[i:], to)
	_, err = r.RestoreDevice("a", st)
	require.ErrorContains(t, err, "onset time out of range")
	require.Zero(t, r.Series())

	d, s = fresh(t)
	const repeats = 0xFEDC
	s.repeats = repeats
	st, _ = d.AppendDeviceState(nil, "a", "s1")
	from, to = binary.AppendVarint(nil, repeats), binary.AppendVarint(nil, 1<<16+5)
	require.Len(t, to, len(from))
	require.Equal(t, 1, bytes.Count(st, from), "the marker once")
	i = bytes.Index(st, from)
	copy(st[i:], to)
	_, err = r.RestoreDevice("a", st)
	require.ErrorContains(t, err, "repeat rate out of range")
	require.Zero(t, r.Series())

	// The shape scorer's positions index its arrays: one past them is
	// refused, not read.
	for _, c := range []struct {
		set func(*shapes)
		msg string
	}{
		{func(h *shapes) { h.next = shapeW }, "shape window position out of range"},
		{func(h *shapes) { h.full = shapeW + 1 }, "shape window length out of range"},
		{func(h *shapes) { h.ncat = shapeK + 1 }, "shape categories out of range"},
	} {
		d, s = fresh(t)
		c.set(&s.shape)
		st, _ = d.AppendDeviceState(nil, "a", "s1")
		_, err = r.RestoreDevice("a", st)
		require.ErrorContains(t, err, c.msg)
		require.Zero(t, r.Series())
	}
}
