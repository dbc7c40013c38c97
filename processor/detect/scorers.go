package detect

import (
	"math"
	"time"
)

// Alert kinds, one per scorer.
const (
	KindZScore = "zscore"
	KindStuck  = "stuck"
	KindLimit  = "limit"
	KindGap    = "gap"
	KindShift  = "shift"
)

// gapFactor: a reading that comes this many usual intervals (and long
// intervals, below) after the previous one ends a gap. gapScore: a gap's
// score. A gap says the data stopped, not how the process behaved, so it
// opens an alert (critical by its kind) but ranks below the process's own
// anomalies in the score: below every extreme and every likelihood past
// about q = 1e-22.
const (
	gapFactor = 5
	gapScore  = 0.6
)

// A series' long interval is the interval that only a share longShare of
// its intervals exceeds (its usual silences), learned on a log scale: up
// by longStep when an interval exceeds it, down by longStep*longShare
// otherwise. A series that is often silent for a while (a sensor that
// reports on change, a flaky link) has a long interval well above its
// usual one, and only a gap well beyond that is one; for a series that
// reports like a clock it stays the usual interval.
const (
	longShare = 0.01
	longStep  = 0.05
)

var longUp, longDown = math.Exp(longStep), math.Exp(-longStep * longShare)

// gap scores gapScore on the first reading after a silence of more than
// gapFactor times the series' usual interval and its long interval
// (learned from the readings' own timestamps, so a gap shows when the
// series resumes). It also learns both; a gap itself moves the usual
// interval little. A late reading (one that repeats or steps back from
// the newest time seen) neither learns nor moves that time back: the
// silence after it is measured from the newest reading, so readings that
// overtook others (two bridges sharing a subscription) do not make the
// next in-order reading look like the end of a gap.
func (s *Series) gap(cfg *Config, ts time.Time) Finding {
	t := ts.UnixNano()
	prev := s.lastTS
	if prev != 0 && t <= prev {
		return Finding{Kind: KindGap}
	}
	s.lastTS = t
	if s.n < 2 || prev == 0 {
		return Finding{Kind: KindGap}
	}
	dt := float64(t-prev) / 1e9
	f := Finding{Kind: KindGap}
	long := float64(s.long)
	if s.cadence > 0 && s.n > int64(cfg.Warmup) && dt > gapFactor*max(float64(s.cadence), long) {
		sd := s.sd()
		f = Finding{Score: gapScore, Kind: KindGap, Low: s.mean - cfg.Z*sd, High: s.mean + cfg.Z*sd}
	}
	switch {
	case long == 0:
		s.long = float32(dt)
	case dt > long:
		s.long = float32(long * longUp)
	default:
		s.long = float32(long * longDown)
	}
	if c := float64(s.cadence); c == 0 {
		s.cadence = float32(dt)
	} else {
		s.cadence = float32(c + 0.05*(min(dt, 2*c)-c))
	}
	return f
}

// zscore rates how far v lies from the series' robust level, in robust
// standard deviations: score = 1 - 2^-(z/Z)², so z = Z scores 0.5.
func (s *Series) zscore(cfg *Config, raw, v float64) Finding {
	if s.n < 2 {
		return Finding{Kind: KindZScore, Low: nan, High: nan}
	}
	sd := s.sd()
	z := math.Abs(v-s.mean) / sd
	r := z / cfg.Z
	return Finding{
		Score: 1 - math.Exp2(-r*r),
		dev:   v - s.mean,
		step:  s.step(raw, v),
		Kind:  KindZScore,
		Low:   s.mean - cfg.Z*sd,
		High:  s.mean + cfg.Z*sd,
	}
}

// stuck scores 1 when a series that used to move repeats the same value
// StuckAfter times its usual run (at most twice StuckAfter), and twice as
// often as its longest run of one value before (a series that often
// repeats itself is not stuck at its usual run). The usual run counts
// while the longest is still being learned: a coarse sensor that holds
// each value for two readings on average needs twice as many before its
// first long run is known. While the value stays, the finding holds the
// alert open without scoring again, so the score marks the onset.
func (s *Series) stuck(cfg *Config, v float64) Finding {
	if cfg.StuckAfter == 0 || !s.moved || v != s.raw {
		return Finding{Kind: KindStuck}
	}
	usual := min(2, 1/(1-float64(s.repeats)/65536))
	at := max(int(math.Ceil(float64(cfg.StuckAfter)*usual)), 2*int(s.maxRun))
	switch n := int(s.run) + 1; {
	case n < at:
		return Finding{Kind: KindStuck}
	case n == at:
		if s.stuckSeen && v == s.stuckVal {
			// Stuck at the same value as before: a resting state the
			// series returns to (off, idle), learned as its habit.
			return Finding{Kind: KindStuck}
		}
		s.stuckRun, s.stuckSeen, s.stuckVal = true, true, v
		sd := s.sd()
		return Finding{Score: 1, Kind: KindStuck, Low: s.mean - cfg.Z*sd, High: s.mean + cfg.Z*sd}
	}
	return Finding{Kind: KindStuck, Hold: true}
}

// learnRepeats folds a finished run of s.run readings into the rate at
// which a reading repeats the previous value: its s.run-1 repeats, then
// the change that ended it, each with weight a. The rate leaves out the
// run in progress, so a stuck sensor does not raise its own bar.
func (s *Series) learnRepeats(a float64) {
	r := float64(s.repeats) / 65536
	if s.run > 1 {
		k := math.Pow(1-a, float64(s.run-1))
		r = k*r + 1 - k
	}
	r *= 1 - a
	s.repeats = uint16(min(r*65536, 65535))
}

// limit scores 1 outside the metric's static limits.
func limit(cfg *Config, metric string, v float64) Finding {
	l, ok := cfg.Limits[metric]
	if !ok {
		return Finding{Kind: KindLimit}
	}
	if v < l.Min || v > l.Max { // comparisons with a NaN (open) bound are false
		return Finding{Score: 1, Kind: KindLimit, Low: l.Min, High: l.Max}
	}
	return Finding{Kind: KindLimit}
}

// Likelihood settings, chosen on the NAB corpus and the simulated fleets
// (make eval).
const (
	rawZ            = 8     // robust z that makes a raw score of 0.5
	likelihoodAlpha = 0.002 // weight of a new raw score in its long-run level and spread
	likelihoodFloor = 1e-3  // added to the raw score's variance, so a very steady series does not alert on a blip
	refractory      = 20    // readings after a detection that score 0
	surpriseHalf    = 15    // -log10 of the tail probability that scores 0.5
	shortAlpha      = 0.2   // weight of a new raw score in its short-run average
	criticalScore   = 0.75  // an alert opened at this score or more is critical (q ≤ 1e-45)
	tailAlpha       = 0.001 // weight of a new reading in the rate of excursions past each edge
	tailWeight      = 4.5   // an excursion seen at rate r is worth at most -tailWeight·log10(r)
)

// tailEdges are the raw z-scores past which a series counts its excursions.
var tailEdges = [...]float64{6, 9, 13, 19, 27, 38, 54, 76}

// likelihood turns the raw z-score into how unusual it is for this
// series, as L = -log10 of a tail probability, scored L/(L+15) (so
// q = 1e-15 scores 0.5 and q = 1e-45 scores 0.75; it never saturates):
//   - the raw score (1 - 2^-(z/8)²) against its own long-run level and
//     spread: a noisy series whose raw score is often high stays calm, a
//     quiet one reacts to a small change;
//   - capped by how often the series made an excursion this far before
//     (onsets only, so a level shift counts once): a spike of a size it
//     makes every day is no surprise, however rare the spread says it is,
//     while a larger one still is;
//   - or the short-run average of the raw score against the narrower
//     spread of such an average, if that says more: a deviation that lasts
//     a few readings is strong evidence even when each reading alone is only
//     mildly unusual.
//
// After a detection the score rests for a few readings (one event, one
// detection), so an alert resolves at the next reading: a lasting anomaly
// is reported again once the rest is over if it still scores high, or as a
// level shift when the baseline restarts (see Series.Observe).
func (s *Series) likelihood(cfg *Config, f Finding, t int64) Finding {
	raw, zr := 0.0, 0.0
	if s.n >= 2 {
		zr = math.Abs(f.dev) / s.sd()
		// Rate of change: a step much larger than the series' usual
		// steps, even where slow swings make the level's spread wide.
		if s.n > 2 && s.dvar > 0 {
			if zs := math.Abs(f.step) / math.Sqrt(s.dvar); zs > zr {
				// The jump speaks, not the distance from the level: the
				// alert says so (the value may lie inside its range).
				zr, f.pace, f.stepZ = zs, true, zs
			}
		}
		r := zr / rawZ
		raw = 1 - math.Exp2(-r*r)
	}
	lmean, lvar := float64(s.lmean), float64(s.lvar)
	d := raw - lmean
	l := tailL(d / math.Sqrt(lvar+likelihoodFloor))
	// The highest edge this reading reached, and how often the series
	// reached it before.
	k := -1
	for k+1 < len(tailEdges) && zr >= tailEdges[k+1] {
		k++
	}
	if k >= 0 && s.tail[k] > 0 {
		l = min(l, -tailWeight*math.Log10(float64(s.tail[k])))
	}
	for i, e := range tailEdges {
		hit := float32(0)
		if zr >= e && i >= int(s.tailK) { // the previous reading reached edges below tailK only
			hit = 1
		}
		s.tail[i] += tailAlpha * (hit - s.tail[i])
	}
	prevK := int(s.tailK)
	s.tailK = int8(k + 1)
	lshort := float64(s.lshort) + shortAlpha*(raw-float64(s.lshort))
	s.lshort = float32(lshort)
	ds := lshort - lmean
	// The short-run average against its own spread, learned like the raw
	// score's: consecutive readings of a real sensor are correlated, so the
	// average spreads far wider than the raw score's spread·√(α/(2-α))
	// that independent readings would give it.
	zs := ds / math.Sqrt(float64(s.lsvar)+likelihoodFloor*shortAlpha/(2-shortAlpha))
	l = max(l, tailL(zs))
	if k >= habitEdge && k >= prevK { // the onset of an excursion past habitEdge
		if s.habitual(t, k) || s.rhythmic(t, k) {
			// A daily habit or a rhythm: no detection, and the rest that follows one,
			// so the return to the usual level does not score either.
			l = 0
			s.quiet = max(s.quiet, refractory+1)
		}
		s.onsetSec[s.onsetI], s.onsetEdge[s.onsetI] = uint32(t/1e9), int8(k)
		s.onsetI = (s.onsetI + 1) % onsetsKept
	}
	a := max(1/float64(s.n+1), likelihoodAlpha)
	s.lmean = float32(lmean + a*d)
	s.lvar = float32((1 - a) * (lvar + a*d*d))
	s.lsvar = float32((1 - a) * (float64(s.lsvar) + a*ds*ds))
	if s.n < 2 {
		f.Score = 0
		return f
	}
	f.Score = l / (l + surpriseHalf)
	if s.quiet > 0 {
		s.quiet--
		f.Score = 0
	} else if f.Score >= cfg.OpenScore {
		s.quiet = refractory
	}
	return f
}

// Daily habits: a series remembers the onsets of its last few large
// excursions (time and edge). One that starts within habitSlack of a whole
// number of days after at least habitDays of them, each as large as the
// next edge below or larger, and no more than habitSpan ago, is the
// series' daily routine (a nightly backup, a batch job): it scores 0.
// A larger excursion at the same hour, or one at another hour, still
// scores as before.
const (
	habitEdge  = 3           // index of the lowest edge whose onsets are remembered (raw z ≥ 19)
	habitDays  = 3           // earlier onsets a whole number of days before that make a habit
	habitSlack = 90          // minutes either side of a whole number of days
	habitSpan  = 4 * 24 * 60 // minutes back that count
)

// onsetsKept is how many large excursions a series remembers.
const onsetsKept = 6

// habitual reports whether an excursion reaching edge k at t repeats
// earlier ones at the same time of day.
func (s *Series) habitual(t int64, k int) bool {
	now := int64(t / 1e9)
	n := 0
	for i, sec := range s.onsetSec {
		lag := (now - int64(sec)) / 60
		if sec == 0 || int(s.onsetEdge[i]) < k-1 || lag < 24*60-habitSlack || lag > habitSpan {
			continue
		}
		if m := lag % (24 * 60); m <= habitSlack || 24*60-m <= habitSlack {
			n++
		}
	}
	return n >= habitDays
}

// Rhythms: an excursion that follows the series' last rhythmOnsets large
// ones (each as large as the next edge below or larger) at the interval
// they kept, within rhythmTol of it, is the series' rhythm (a tank that
// empties every few minutes, a press that strikes, a batch every hour):
// it scores 0. An excursion off the beat, a beat that changes, or a larger
// one still scores as before.
const (
	rhythmOnsets = 3   // earlier onsets, evenly spaced, that make a rhythm
	rhythmTol    = 0.1 // share of the interval by which a beat may be early or late
)

// rhythmic reports whether an excursion reaching edge k at t keeps the
// beat of the earlier ones.
func (s *Series) rhythmic(t int64, k int) bool {
	var at [rhythmOnsets + 1]int64
	at[0] = t / 1e9
	n := 0
	for j := 1; j <= onsetsKept && n < rhythmOnsets; j++ { // newest first
		i := (int(s.onsetI) - j + onsetsKept) % onsetsKept
		if s.onsetSec[i] == 0 {
			break
		}
		if int(s.onsetEdge[i]) >= k-1 {
			n++
			at[n] = int64(s.onsetSec[i])
		}
	}
	if n < rhythmOnsets {
		return false
	}
	beat := float64(at[0]-at[n]) / float64(n)
	if beat <= 0 {
		return false
	}
	for i := range n {
		if math.Abs(float64(at[i]-at[i+1])-beat) > rhythmTol*beat {
			return false
		}
	}
	return true
}

// tailL is -log10 of the one-sided Gaussian tail probability of z (0 for
// z ≤ 0).
func tailL(z float64) float64 {
	if z <= 0 {
		return 0
	}
	if z < 30 {
		return -math.Log10(0.5 * math.Erfc(z/math.Sqrt2))
	}
	// the tail's asymptote, where Erfc underflows
	return (z*z/2 + math.Log(z*math.Sqrt(2*math.Pi))) / math.Ln10
}
