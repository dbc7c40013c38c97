package detect

import "math"

// Sustained deviation: values that settle a little off their level and stay
// there (a flow that drops by a few spreads when a valve closes, a slow
// drift), each reading ordinary, the shift too small for the baseline to
// restart at it. The short-run mean of the values' distance from the level
// (spread.go keeps it: weight 0.02, about fifty readings, each distance
// clipped at 3 spreads), in the level's spreads, is judged against its own
// long-run mean and spread, learned like the spread scorer's: a real
// sensor's readings are correlated, so that mean wanders far more than
// independent readings would let it, and its own history says how much.
//
// After any detection or open alert of the series the scorer waits for the
// level's memory (1/-detect.alpha readings) to pass: the level then still
// carries part of that event (a shift it absorbed while it lasted), and
// the return from it would read as a deviation of its own. Nor does it
// detect while the series' device alert is open (its metrics' deviations
// are that alert's) or while the value repeats itself. While its score
// stays at or above -detect.resolve-score the series' open alert, of any
// kind, stays open (up to maxHold): the fault lasts.

// KindSustained is the alert kind of the sustained-deviation scorer.
const KindSustained = "sustained"

// sustained scores the short-run mean's deviation from the level (spread
// sd) with value v at t (Unix nanoseconds); spreadChange has folded in v.
func (s *Series) sustained(cfg *Config, v, sd float64, t int64) Finding {
	if s.n < 2 {
		return Finding{Kind: KindSustained}
	}
	z := judge(float64(s.v2z)/sd, &s.smM, &s.smV, max(1/float64(s.n), likelihoodAlpha), s.n > spreadWarmup)
	if s.alert.held(t) && spreadScore(z) >= cfg.ResolveScore {
		// The deviation lasts: the series' alert stays open, whichever
		// scorer opened it (a level shift within the expected range
		// opens a zscore alert at its onset and lasts this way).
		s.smArmed = false
		return Finding{Kind: KindSustained, Hold: true}
	}
	if math.Abs(z) < 1 {
		s.smArmed = true // back to usual: the next deviation may be detected
	}
	if s.n <= spreadWarmup || s.quiet > 0 || s.alert.open || s.inDevice {
		// One event, one detection; a metric off its level while its
		// device's alert is open is part of that alert, which names it.
		s.smArmed = false
		s.smWait = int16(min(1/cfg.AlphaMin, math.MaxInt16))
		return Finding{Kind: KindSustained}
	}
	if s.smWait > 0 {
		s.smWait--
		return Finding{Kind: KindSustained}
	}
	if !s.smArmed || s.run >= stuckRunSpread && v == s.raw {
		// A value that repeats itself off the level is a stuck sensor's,
		// which the stuck scorer names.
		return Finding{Kind: KindSustained}
	}
	return s.judged(cfg, KindSustained, spreadScore(z), z, sd, &s.smArmed)
}
