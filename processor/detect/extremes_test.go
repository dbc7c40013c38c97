package detect

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// hour is a reading's time in Unix nanoseconds, counted in hours.
func hour(h float64) int64 { return t0.Add(time.Duration(h * float64(time.Hour))).UnixNano() }

// at feeds value v at hour h with deviation d from the level, in units of
// a quiet-time spread that stays 1 (weight 0), the series past its warm-up.
func (e *extremes) at(h, v, d float64) Finding {
	return e.observe(hour(h), v, d, 1, 0, true, true)
}

// warmExtremes returns extremes that have seen values alternating between
// lo and hi, one an hour for three days (armed), and the burst statistic
// at rest.
func warmExtremes(lo, hi float64) *extremes {
	var e extremes
	for i := 0; i < 72; i++ {
		v := lo
		if i%2 == 1 {
			v = hi
		}
		e.at(float64(i), v, 0)
	}
	return &e
}

func TestExtremes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		run   func(e *extremes) []Finding
		kinds []string // the kind of each finding that scored, in order
	}{
		{
			name: "a value beyond the range by more than 5 % of it",
			run: func(e *extremes) []Finding {
				return []Finding{e.at(72, 10.6, 0)}
			},
			kinds: []string{KindRange},
		},
		{
			name: "within 5 % of the range is no record",
			run: func(e *extremes) []Finding {
				// In turn, as before: the short-run level keeps its range too.
				return []Finding{e.at(72, -0.4, 0), e.at(73, 10.4, 0)}
			},
		},
		{
			name: "a new record during the rest after one does not alert again",
			run: func(e *extremes) []Finding {
				var out []Finding
				for i, v := range []float64{11, 12, 13} {
					out = append(out, e.at(72+float64(i), v, 0))
				}
				return out
			},
			kinds: []string{KindRange},
		},
		{
			name: "a record of another kind during the rest stays silent",
			run: func(e *extremes) []Finding {
				// A low record, then values within the range whose
				// short-run level soon passes every level held.
				out := []Finding{e.at(72, -0.6, 0)}
				for i := range 30 {
					out = append(out, e.at(73+float64(i), 10.4, 0))
				}
				return out
			},
			kinds: []string{KindRange},
		},
		{
			name: "a short-run level never held, made of values within the range",
			run: func(e *extremes) []Finding {
				var out []Finding
				for i := 0; i < 12; i++ {
					v := 7.0
					if i%2 == 1 {
						v = 10
					}
					out = append(out, e.at(72+float64(i), v, 0))
				}
				return out
			},
			kinds: []string{KindLevel},
		},
		{
			name: "a sustained rise past all but one earlier excursion",
			run: func(e *extremes) []Finding {
				// Peaks near 4 and 6 set the bar; 5 passes the smaller,
				// 3.5 passes neither.
				return excursionsOf(e, 4, 6, 5, 3.5)
			},
			kinds: []string{KindBurst},
		},
		{
			name: "a sustained fall past all but one earlier fall",
			run: func(e *extremes) []Finding {
				return excursionsOf(e, -4, -6, -5, -3.5)
			},
			kinds: []string{KindBurst},
		},
		{
			name: "rises and falls are ranked apart",
			run: func(e *extremes) []Finding {
				// Falls of 3.5 and 3 set the bar for falls; the two large
				// rises after them (too few to alert) do not raise it.
				return excursionsOf(e, -3.5, -3, 8, 9, -4)
			},
			kinds: []string{KindBurst},
		},
		{
			name: "a burst that moves the values by less than 0.5 % of the range",
			run: func(e *extremes) []Finding {
				*e = *warmExtremes(0, 2000) // 0.5 % is 10, the peaks are 6 at most
				return excursionsOf(e, 4, 6, 5, -4, -6, -5)
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var kinds []string
			for _, f := range tt.run(warmExtremes(0, 10)) {
				if f.Score > 0 {
					require.GreaterOrEqual(t, f.Score, extremeBase)
					require.LessOrEqual(t, f.Score, extremeBase+extremeRange)
					kinds = append(kinds, f.Kind)
				}
			}
			require.Equal(t, tt.kinds, kinds)
		})
	}
}

// excursionsOf feeds e, from hour 72 on, one excursion of the deviation
// per peak (20 readings at it), each followed by 30 readings at the level.
func excursionsOf(e *extremes, peaks ...float64) []Finding {
	var out []Finding
	at := 72.0
	for _, z := range peaks {
		for i := range 50 {
			d := z
			if i >= 20 {
				d = 0
			}
			out = append(out, e.at(at, 5, d))
			at++
		}
	}
	return out
}

func TestExtremesWaitTwoDaysAndScoreTheMargin(t *testing.T) {
	var e extremes
	for i := 0; i < 47; i++ {
		e.at(float64(i), float64(i%2), 0)
	}
	require.Zero(t, e.at(47, 100, 0).Score, "not armed before two days")
	e = *warmExtremes(0, 10)
	require.Zero(t, e.observe(hour(72), 100, 0, 1, 0, false, true).Score, "not armed during the warm-up")
	small := warmExtremes(0, 10).at(72, 11, 0)
	large := warmExtremes(0, 10).at(72, 25, 0)
	require.Equal(t, KindRange, small.Kind)
	require.InDelta(t, extremeBase+extremeRange*0.1, small.Score, 1e-9)
	require.Equal(t, extremeBase+extremeRange, large.Score, "a margin of a whole range or more")
	require.Equal(t, [2]float64{0, 10}, [2]float64{small.Low, small.High}, "the expected range is the range shown so far")
}

// The quiet-time spread is the level's until the warm-up ends; after it,
// a busy stretch widens it little, where a plain spread would follow.
func TestQuietSpreadIgnoresABusyStretch(t *testing.T) {
	var e extremes
	for i := 0; i < 30; i++ {
		e.observe(hour(float64(i)), 0, 0, 2, 0.005, false, true)
	}
	require.InDelta(t, 4.0, e.quiet2, 0.05, "the level's spread during the warm-up")
	for i := 30; i < 80; i++ {
		e.observe(hour(float64(i)), 0, 20, 2, 0.005, true, true) // ten spreads off, fifty times
	}
	require.Less(t, math.Sqrt(e.quiet2), 2.6, "clipped at 1.75 of itself, it grows by at most 1 %% a reading")
	require.Greater(t, math.Sqrt(e.quiet2), 2.0)
}

// Through the detector: a series watched for three days alerts once, with
// kind range and the range it had shown, on a value beyond it, and not
// at all with extremes switched off.
func TestExtremesThroughTheDetector(t *testing.T) {
	values := noise(3*1440+100, 21, 20, 0.5) // one a minute
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values[:3*1440] {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	values[3*1440+50] = hi + 0.5*(hi-lo)
	run := func(cfg Config) []sensor.Alert {
		d := New(cfg)
		var out []sensor.Alert
		for i, v := range values {
			r := sensor.Reading{DeviceID: "dev-1", Site: "s", TS: t0.Add(time.Duration(i) * time.Minute), Metrics: map[string]float64{"m": v}}
			out, _ = d.Observe(&r, out, nil)
		}
		return opened(out)
	}
	a := run(DefaultConfig())
	require.Len(t, a, 1, "%v", a)
	require.Equal(t, KindRange, a[0].Kind)
	require.Equal(t, t0.Add((3*1440+50)*time.Minute), a[0].StartedAt)
	require.InDelta(t, lo, a[0].ExpectedLow, 1e-9)
	require.InDelta(t, hi, a[0].ExpectedHigh, 1e-9)
	require.Contains(t, a[0].Message, "beyond everything the series has shown")
	require.Equal(t, sensor.SeverityCritical, a[0].Severity, "half a range past it")

	cfg := DefaultConfig()
	cfg.Extremes = false
	for _, e := range run(cfg) {
		require.NotContains(t, []string{KindRange, KindLevel, KindBurst}, e.Kind)
	}
}

// A counter passes its old high by a sliver each reading, never by 5 % of
// its range: no extremes, however long it climbs.
func TestExtremesLeaveACounterAlone(t *testing.T) {
	var e extremes
	for i := 0; i < 10*24; i++ {
		f := e.at(float64(i), float64(i)*0.5, 1.5)
		require.Zero(t, f.Score, "reading %d: %+v", i, f)
	}
}

// A burst's message says which way the series moved: the burst's own
// direction, whichever side of the level the reading that opens it lies.
func TestBurstMessageSaysRiseOrFall(t *testing.T) {
	for _, tt := range []struct {
		z    float64 // the burst's short-run mean z
		v    float64
		want string
	}{
		{4, 8, "a sustained rise to 8"},
		{4, 4, "a sustained rise to 4"},
		{-4, 2, "a sustained fall to 2"},
		{-4, 6, "a sustained fall to 6"},
	} {
		d := New(DefaultConfig())
		s := &Series{cfg: &d.cfg, n: 100}
		r := sensor.Reading{DeviceID: "dev-1", TS: t0}
		f := Finding{Score: 0.8, Kind: KindBurst, Low: 0, High: 10, dev: tt.z}
		out := d.transition(s, &r, "m", tt.v, f, nil)
		require.Len(t, out, 1)
		require.Contains(t, out[0].Message, tt.want)
	}
}

// An excursion that passes the bar while the extremes may not alert,
// before they arm or in the rest after another detection, does not alert
// later, however long it lasts.
func TestBurstPastTheBarWhileSilentNeverAlerts(t *testing.T) {
	var e extremes
	h := 0.0
	feed := func(z float64, n int) (alerts int) {
		for range n {
			if e.at(h, 5, z).Score > 0 {
				alerts++
			}
			h += 0.2
		}
		return alerts
	}
	e.at(h, 0, 0) // the range, 0 to 10, with the value 5 inside it
	e.at(h, 10, 0)
	feed(4, 20)
	feed(0, 30)
	feed(6, 20)
	feed(0, 30) // 20 hours: the bar is set
	require.Zero(t, feed(5, 200), "past the bar from hour 20, armed at hour 48")

	e = *warmExtremes(0, 10)
	h = 72
	feed(4, 20)
	feed(0, 30)
	feed(6, 20)
	feed(0, 30)
	require.Equal(t, KindRange, e.at(h, 11, 0).Kind, "a record starts the rest")
	h += 0.2
	require.Zero(t, feed(5, 100), "past the bar during the rest")
	feed(0, 30)
	require.Equal(t, 1, feed(5.5, 20), "the next excursion past the bar alerts")
}

// A burst that is not the series' own (its device's metrics move
// together) does not alert, then or later in the same excursion; it still
// raises the bar for the next.
func TestBurstHeldBackWhileTheDeviceMovesTogether(t *testing.T) {
	e := warmExtremes(0, 10)
	require.Empty(t, nonzero(excursionsOf(e, 4, 6)), "the bar: peaks 4 and 6")
	at := 72.0 + 100
	for i := range 50 { // a peak of 5 passes 4, while the device moves as a whole
		d := 5.0
		if i >= 20 {
			d = 0
		}
		require.Zero(t, e.observe(hour(at), 5, d, 1, 0, true, i >= 10).Score, "reading %d", i)
		at++
	}
	for i := range 50 { // 5 is now the bar; 5.5 passes it, the series' own
		d := 5.5
		if i >= 20 {
			d = 0
		}
		if f := e.observe(hour(at), 5, d, 1, 0, true, true); f.Score > 0 {
			require.Equal(t, KindBurst, f.Kind)
			return
		}
		at++
	}
	t.Fatal("the next excursion past the bar alerts")
}

func nonzero(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Score > 0 {
			out = append(out, f)
		}
	}
	return out
}

// A burst finding carries its direction for the alert's message.
func TestBurstFindingCarriesItsDirection(t *testing.T) {
	for _, sign := range []float64{1, -1} {
		var dev []float64
		for _, f := range excursionsOf(warmExtremes(0, 10), 4*sign, 6*sign, 5*sign) {
			if f.Kind == KindBurst && f.Score > 0 {
				dev = append(dev, f.dev)
			}
		}
		require.Len(t, dev, 1)
		require.Equal(t, sign, math.Copysign(1, dev[0]))
	}
}
