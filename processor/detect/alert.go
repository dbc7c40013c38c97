package detect

import (
	"fmt"
	"math"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// alertState is the open alert of a series, if any.
type alertState struct {
	open      bool
	fall      bool // a burst alert: the series fell
	below     int32
	startedAt time.Time
	id        string
	kind      string
	severity  string
	low, high float64
	peak      float64
	held      int32 // readings the alert has been open
}

// maxHold bounds how long an alert stays open only because the series has
// not come back into the range expected when it opened: after that long
// the new behaviour is the series' normal (its baseline learned it
// meanwhile) and the alert resolves once the scores are low.
const maxHold = time.Hour

// transition runs the alert state machine of one series after a finding and
// appends the open or resolve event, if any, to out.
func (d *Detector) transition(s *Series, r *sensor.Reading, metric string, v float64, f Finding, out []sensor.Alert) []sensor.Alert {
	a := &s.alert
	if !a.open {
		if s.n <= int64(s.cfg.Warmup) && f.Kind != KindLimit || f.Score < s.cfg.OpenScore {
			return out
		}
		sev := sensor.SeverityWarning
		if f.Kind == KindLimit || f.Kind == KindGap || f.Score >= criticalScore {
			sev = sensor.SeverityCritical
		}
		*a = alertState{open: true, startedAt: r.TS, id: sensor.AlertID(r.DeviceID, metric, r.TS),
			kind: f.Kind, fall: f.Kind == KindBurst && f.dev < 0, severity: sev, low: f.Low, high: f.High, peak: f.Score}
		return append(out, d.event(a, r, metric, v, f.Score, sensor.StateOpen))
	}
	a.peak = math.Max(a.peak, f.Score)
	a.held++
	// An alert lasts as long as the fault: it stays open while the value
	// lies outside the range expected when it opened, however the scores
	// (which mark onsets) have settled.
	away := (v < a.low || v > a.high) && r.TS.Sub(a.startedAt) < maxHold
	if f.Score >= s.cfg.ResolveScore || f.Hold || away {
		a.below = 0
		return out
	}
	a.below++
	if int(a.below) < s.cfg.ResolveAfter {
		return out
	}
	ev := d.event(a, r, metric, v, f.Score, sensor.StateResolved)
	a.open = false
	return append(out, ev)
}

func (d *Detector) event(a *alertState, r *sensor.Reading, metric string, v, score float64, state string) sensor.Alert {
	ev := sensor.Alert{
		AlertID: a.id, DeviceID: r.DeviceID, Site: r.Site, Metric: metric, Kind: a.kind, Severity: a.severity,
		State: state, Score: round(score), Value: v, ExpectedLow: finite(a.low), ExpectedHigh: finite(a.high),
		TS: r.TS, StartedAt: a.startedAt,
	}
	if state == sensor.StateOpen {
		ev.Message = fmt.Sprintf("%s %s: %g outside the expected range [%.4g, %.4g] (%s)", r.DeviceID, metric, v, ev.ExpectedLow, ev.ExpectedHigh, a.kind)
		switch a.kind {
		case KindStuck:
			ev.Message = fmt.Sprintf("%s %s: stuck at %g", r.DeviceID, metric, v)
		case KindShift:
			ev.Message = fmt.Sprintf("%s %s: level shifted to %g, outside the expected range [%.4g, %.4g] for %d readings in a row", r.DeviceID, metric, v, ev.ExpectedLow, ev.ExpectedHigh, shiftRun)
		case KindRange:
			ev.Message = fmt.Sprintf("%s %s: %g is beyond everything the series has shown, [%.4g, %.4g]", r.DeviceID, metric, v, ev.ExpectedLow, ev.ExpectedHigh)
		case KindLevel:
			ev.Message = fmt.Sprintf("%s %s: its short-run level is beyond every level the series has held, [%.4g, %.4g] (now %g)", r.DeviceID, metric, ev.ExpectedLow, ev.ExpectedHigh, v)
		case KindBurst:
			move := "rise"
			if a.fall {
				move = "fall"
			}
			ev.Message = fmt.Sprintf("%s %s: a sustained %s to %g, larger than all but one the series has made", r.DeviceID, metric, move, v)
		case KindGap:
			ev.Message = fmt.Sprintf("%s %s: readings resumed after a gap of more than %d usual intervals, and %d of its usual silences", r.DeviceID, metric, gapFactor, gapFactor)
		}
	} else {
		ts := r.TS
		ev.ResolvedAt = &ts
		ev.Message = fmt.Sprintf("%s %s: back to normal at %g after %s (peak score %.2f)", r.DeviceID, metric, v, r.TS.Sub(a.startedAt), a.peak)
	}
	return ev
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func round(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// Round rounds a score as the processor publishes it (four decimals).
func Round(v float64) float64 { return round(v) }
