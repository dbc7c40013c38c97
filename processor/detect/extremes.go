package detect

import "math"

// Extremes: what a series has never done before. Once a series has been
// watched for extremesSpan (two days, as long as the daily profile waits,
// so its range has seen its daily cycle twice), it alerts on
//   - a value beyond everything it has shown, by more than rangeTol of its
//     range (kind "range"): Numenta's "spatial anomaly";
//   - a short-run mean of its values beyond every short-run mean it has
//     held (kind "level"): a move to a level the series never sat at,
//     made of values none of which need be a record;
//   - an upward or downward excursion of the short-run mean of its
//     deviation from the level (less the time of day's offset) in units of
//     its quiet-time spread, whose peak reaches burstMin and passes all but
//     one of the earlier peaks of excursions in that direction, and whose
//     deviation is at least burstTol of the range (kind "burst"): one of the
//     two most sustained rises, or falls, it made, and not a negligible one
//     (a series that rests at 0 between large peaks sits below its level,
//     but by little against its range). Rises and falls are ranked apart, so
//     a series whose rises are large (counts of activity) still shows a
//     fall, and one whose falls are large (speed in traffic) a rise. The
//     quiet-time spread learns from deviations clipped at quietClip of
//     itself, so it is the spread of ordinary readings: unlike the level's
//     spread, a stretch of busy readings barely widens it, and a sustained
//     rise or fall stands out.
//
// These are rare by construction (a stationary series sets a record about
// once in as many readings as it has seen), and after a detection of any
// kind all three rest extremesRest readings. A detection also starts the
// likelihood's rest, so one event makes one alert.
const (
	extremesSpan = seasonMinSpan // seconds watched before extremes may alert
	extremesRest = refractory    // readings after a detection during which the extremes stay silent
	rangeTol     = 0.05          // share of the range a value must pass it by
	levelAlpha   = 0.3           // weight of a new value in the short-run mean of values
	burstAlpha   = 0.2           // weight of a new z in the short-run mean of deviations
	burstEnter   = 1             // that mean beyond this, either way, is an excursion
	burstMin     = 3             // the smallest excursion peak that may alert
	burstClip    = 10            // |z| counted at most, so one huge spike does not make a burst
	burstTol     = 0.005         // share of the range the short-run mean of deviations must reach for a burst
	quietClip    = 1.75          // deviations beyond this many quiet-time spreads count as this many in it
	extremeBase  = 0.7           // score of an extreme just past the bar; it grows with the margin
	extremeRange = 0.25          // score added for a margin of one full range (or one earlier peak)
)

// Alert kinds of the extremes scorer.
const (
	KindRange = "range"
	KindLevel = "level"
	KindBurst = "burst"
)

// extremes is a series' record of its extremes: 136 bytes.
type extremes struct {
	first          int64         // time of the first reading, Unix nanoseconds
	lo, hi         float64       // range of the values
	mean, mlo, mhi float64       // short-run mean of the values, and its range
	quiet2         float64       // the quiet-time spread, squared
	burst          float64       // short-run mean of the clipped z
	moves          [2]excursions // its rises and its falls
	started        bool          // first reading seen
	rest           int8          // readings left in the rest after a detection
}

// extremeScore grows from extremeBase with the margin (a share of the
// range or of an earlier peak) up to extremeBase+extremeRange.
func extremeScore(margin float64) float64 {
	return extremeBase + extremeRange*min(1, max(0, margin))
}

// observe folds value v at t in and returns the finding of the first
// kind that fires. d is v's deviation from the level (less the time of
// day's offset) and sd the level's spread; warm reports whether the series
// is past its warm-up: until then the quiet-time spread is the level's,
// after it it learns on its own with weight alpha per reading. bursts is
// false while a burst is not the series' own to report (its device's
// metrics move together): an excursion that becomes one of the two
// largest then does not alert later either.
func (e *extremes) observe(t int64, v, d, sd, alpha float64, warm, bursts bool) Finding {
	if !e.started {
		*e = extremes{first: t, lo: v, hi: v, mean: v, mlo: v, mhi: v, started: true}
		return Finding{Kind: KindRange}
	}
	if !warm || e.quiet2 == 0 {
		e.quiet2 = sd * sd
	}
	q := math.Sqrt(e.quiet2)
	z := 0.0
	if q > 0 {
		z = d / q
	}
	dc := max(-quietClip*q, min(quietClip*q, d))
	e.quiet2 += alpha * (dc*dc - e.quiet2)
	// Armed, and not resting after a detection.
	may := warm && t-e.first >= extremesSpan*1e9 && e.rest == 0
	best := Finding{Kind: KindRange}
	// A value beyond the range.
	if w := e.hi - e.lo; may && w > 0 {
		if m := max(v-e.hi, e.lo-v) / w; m > rangeTol {
			best = Finding{Score: extremeScore(m), Kind: KindRange, Low: e.lo, High: e.hi}
		}
	}
	e.lo, e.hi = min(e.lo, v), max(e.hi, v)
	// A short-run mean beyond its range.
	e.mean += levelAlpha * (v - e.mean)
	if w := e.mhi - e.mlo; may && w > 0 {
		if m := max(e.mean-e.mhi, e.mlo-e.mean) / w; m > rangeTol && best.Score == 0 {
			best = Finding{Score: extremeScore(m), Kind: KindLevel, Low: e.mlo, High: e.mhi}
		}
	}
	e.mlo, e.mhi = min(e.mlo, e.mean), max(e.mhi, e.mean)
	// One of the two largest upward, or downward, excursions of the
	// short-run mean of z, if it moved the values by burstTol of the range.
	e.burst += burstAlpha * (max(-burstClip, min(burstClip, z)) - e.burst)
	big := math.Abs(e.burst)*q >= burstTol*(e.hi-e.lo)
	for i, b := range [2]float64{e.burst, -e.burst} {
		// A burst that comes with a record counts as found.
		if m, ok := e.moves[i].step(b, may && big && bursts); ok && best.Score == 0 {
			best = Finding{Score: extremeScore(m), Kind: KindBurst, Low: nan, High: nan, dev: e.burst}
		}
	}
	if best.Score > 0 {
		e.rest = extremesRest + 1
	}
	e.rest = max(e.rest-1, 0)
	return best
}

// excursions tracks the excursions of the short-run mean of z in one
// direction (a fall is a rise of -z): 32 bytes.
type excursions struct {
	peak      float64    // the current excursion's peak
	top       [2]float64 // the two largest peaks of finished excursions
	in, fired bool       // in an excursion; it alerted
}

// step folds in b, the short-run mean of z in this direction, and reports
// whether the current excursion has just become one of the two largest
// (with its margin over the second-largest earlier peak); may is false
// while an alert is not allowed, and an excursion that becomes one of them
// then does not alert later.
func (x *excursions) step(b float64, may bool) (float64, bool) {
	switch {
	case b > burstEnter:
		if !x.in {
			x.in, x.peak, x.fired = true, b, false
		}
		x.peak = max(x.peak, b)
		if !x.fired && x.top[1] > 0 && x.peak > x.top[1] && x.peak >= burstMin {
			// Past the bar: it alerts now or never (not once the
			// extremes arm, nor after the rest of another detection).
			x.fired = true
			return x.peak/x.top[1] - 1, may
		}
	case x.in:
		x.in = false
		if x.peak > x.top[0] {
			x.top[0], x.top[1] = x.peak, x.top[0]
		} else if x.peak > x.top[1] {
			x.top[1] = x.peak
		}
	}
	return 0, false
}
