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
	fall      bool // a burst alert: the series fell; a spread alert: it narrowed
	pace      bool // a spread alert of the steps from one reading to the next
	below     int32
	startedAt time.Time
	id        string
	kind      string
	severity  string
	low, high float64
	peak      float64
	// quietSince is set while the alert would have resolved but waits
	// ReopenWithin for the series to stay quiet: a new detection in that
	// time continues this alert instead of opening another.
	quietSince int64 // Unix nanoseconds; 0: not waiting
	quietV     float64
	// muted: the device was past its ceiling when this alert opened; it
	// is tracked so it cannot reopen every reading, but never published.
	muted bool
}

// KindCeiling is the kind of the summary alert a device raises when it
// passes -detect.max-alerts-per-hour: it opens with the first alert held
// back and resolves at the end of the hour, saying how many were.
const KindCeiling = "ceiling"

// ceilingMetric is the metric name the summary alert carries.
const ceilingMetric = "alert_ceiling"

// budget counts a device's alert openings per hour (of the readings' time).
// A device gets one with its first alert.
type budget struct {
	windowEnd    time.Time
	opened       int32
	heldBack     int32
	summaryOpen  bool
	summaryStart time.Time
	summaryID    string
	site         string
}

// maxHold bounds how long an alert stays open only because the series has
// not come back into the range expected when it opened: after that long
// the new behaviour is the series' normal (its baseline learned it
// meanwhile) and the alert resolves once the scores are low.
const maxHold = time.Hour

// held reports whether the alert is open and started less than maxHold
// before t (Unix nanoseconds): whether a lasting condition may still hold
// it open.
func (a *alertState) held(t int64) bool {
	return a.open && t-a.startedAt.UnixNano() < int64(maxHold)
}

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
			kind: f.Kind, fall: (f.Kind == KindBurst || f.Kind == KindSpread) && f.dev < 0, pace: f.pace, severity: sev, low: f.Low, high: f.High, peak: f.Score}
		var muted bool
		if out, muted = d.spend(s, r, out); muted {
			a.muted = true
			return out
		}
		d.open++
		ev := d.event(a, r, metric, v, f.Score, sensor.StateOpen)
		if f.Kind == KindZScore && f.pace {
			ev.Message = fmt.Sprintf("%s %s: %g jumped by %+.4g from the previous reading, %.0f times its usual step (expected range [%.4g, %.4g])",
				r.DeviceID, metric, v, f.step, f.stepZ, ev.ExpectedLow, ev.ExpectedHigh)
		}
		return append(out, ev)
	}
	a.peak = max(a.peak, f.Score)
	// An alert lasts as long as the fault: it stays open while the value
	// lies outside the range expected when it opened, however the scores
	// (which mark onsets) have settled.
	away := (v < a.low || v > a.high) && a.held(r.TS.UnixNano())
	if f.Score >= s.cfg.ResolveScore || f.Hold || away {
		a.below = 0
		a.quietSince = 0 // back within ReopenWithin: the same alert goes on
		return out
	}
	a.below++
	if int(a.below) < s.cfg.ResolveAfter {
		return out
	}
	if s.cfg.ReopenWithin > 0 {
		// Resolve only once the series stayed quiet that long, so an
		// alert that would resolve and reopen is one alert.
		if a.quietSince == 0 {
			a.quietSince, a.quietV = r.TS.UnixNano(), v
			return out
		}
		if time.Duration(r.TS.UnixNano()-a.quietSince) < s.cfg.ReopenWithin {
			return out
		}
	}
	a.open = false
	if a.muted {
		return out
	}
	d.open--
	ev := d.event(a, r, metric, v, f.Score, sensor.StateResolved)
	if a.quietSince != 0 { // resolved when it went quiet, published now
		at := time.Unix(0, a.quietSince).UTC()
		ev.ResolvedAt, ev.Value = &at, a.quietV
		ev.Message = fmt.Sprintf("%s %s: back to normal at %g after %s (peak score %.2f)", r.DeviceID, metric, a.quietV, at.Sub(a.startedAt), a.peak)
	}
	return append(out, ev)
}

// spend counts an alert opening of series s against its device's hourly
// ceiling. Past it, the alert is muted (the first muted one opens the
// device's summary alert, appended to out).
func (d *Detector) spend(s *Series, r *sensor.Reading, out []sensor.Alert) ([]sensor.Alert, bool) {
	limit := d.cfg.MaxAlertsPerHour
	if limit <= 0 {
		return out, false
	}
	b := s.budget
	if b == nil {
		if b = d.budgets[r.DeviceID]; b == nil {
			b = &budget{}
			d.budgets[r.DeviceID] = b
		}
		s.budget = b
	}
	out = d.endWindow(b, r, out)
	if b.windowEnd.IsZero() {
		b.windowEnd = r.TS.Add(time.Hour)
	}
	if int(b.opened) < limit {
		b.opened++
		return out, false
	}
	b.heldBack++
	if !b.summaryOpen {
		b.site, b.summaryOpen, b.summaryStart = r.Site, true, r.TS
		b.summaryID = sensor.AlertID(r.DeviceID, ceilingMetric, r.TS)
		out = append(out, sensor.Alert{AlertID: b.summaryID, DeviceID: r.DeviceID, Site: r.Site, Metric: ceilingMetric, Kind: KindCeiling,
			Severity: sensor.SeverityWarning, State: sensor.StateOpen, TS: r.TS, StartedAt: r.TS,
			Message: fmt.Sprintf("%s raised %d alerts within an hour, its ceiling: further alerts are held back until %s", r.DeviceID, limit, b.windowEnd.UTC().Format(time.RFC3339))})
	}
	return out, true
}

// endWindow starts a new hour for the device once its current one is over,
// resolving its summary alert with the count of alerts held back.
func (d *Detector) endWindow(b *budget, r *sensor.Reading, out []sensor.Alert) []sensor.Alert {
	if b == nil || b.windowEnd.IsZero() || r.TS.Before(b.windowEnd) {
		return out
	}
	if b.summaryOpen {
		at := b.windowEnd
		out = append(out, sensor.Alert{AlertID: b.summaryID, DeviceID: r.DeviceID, Site: b.site, Metric: ceilingMetric, Kind: KindCeiling,
			Severity: sensor.SeverityWarning, State: sensor.StateResolved, TS: r.TS, StartedAt: b.summaryStart, ResolvedAt: &at,
			Message: fmt.Sprintf("%s: %d alerts held back between %s and %s", r.DeviceID, b.heldBack, b.summaryStart.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))})
	}
	*b = budget{}
	return out
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
		case KindSpread:
			move := "wider"
			if a.fall {
				move = "narrower"
			}
			ev.Message = fmt.Sprintf("%s %s: its values swing %s around their level than usual (now %g)", r.DeviceID, metric, move, v)
			if a.pace {
				move = map[bool]string{false: "faster", true: "slower"}[a.fall]
				ev.Message = fmt.Sprintf("%s %s: its values change %s from one reading to the next than usual (now %g)", r.DeviceID, metric, move, v)
			}
		case KindShape:
			ev.Message = fmt.Sprintf("%s %s: its values move in a shape the series has not shown, though they stay in their usual range (now %g)", r.DeviceID, metric, v)
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
