package detect

import (
	"math"
	"time"
)

var nan = math.NaN()

// shiftRun is how many consecutive values beyond the clip bound, on one
// side, make a new level that the baseline restarts from. The restart is a
// detection of kind "shift" (score shiftScore) unless the series already
// scored higher or returned to the level before its previous restart.
const (
	shiftRun   = 8
	shiftScore = 0.6
)

// varClip: deviations beyond this many spreads count as this many in the
// spread's update, so a burst of noise widens it less (the level itself
// clips at -detect.z).
const varClip = 3

// Series is the state of one (device, metric) series: about 1,000 bytes
// with its open alert, daily profile and extremes.
type Series struct {
	// Fields are grouped by size (8, 4, then 1 byte) so the struct has
	// little padding: with the 8-byte header the allocator puts before an
	// object of more than 512 bytes with pointers, its 1,016 bytes fill
	// the 1,024-byte class (TestStateIsSmall).
	cfg       *Config // shared: the detector's, or one made by rules
	n         int64
	mean      float64 // robust level (EWMA of winsorized values)
	varc      float64 // robust spread (EWMA of squared winsorized deviations)
	last      float64 // the previous value, without its time of day's offset
	raw       float64 // the previous value as read
	dvar      float64 // spread of the change from one reading to the next (EWMA of squares)
	lastTS    int64   // time of the last reading, Unix nanoseconds
	stuckVal  float64 // the value of the last stuck alert
	prevLevel float64 // the level before the last restart
	alert     alertState
	budget    *budget // the device's, shared by its series; nil without a ceiling
	season    season
	extremes  extremes
	shape     shapes
	// The device scorer's reference baseline (see device.go).
	rn          int64
	rmean, rvar float64
	// Spread change (spread.go): the short-run mean of the distance from
	// the level and of its clipped square around it, the long-run mean and
	// variance of the latter's log, and whether it may detect (v2armed).
	v2z, v2, v2m, v2v float32
	// The same for the steps from one reading to the next (no short-run
	// mean: a step's usual value is 0).
	s2, s2m, s2v float32
	// Sustained deviation (sustained.go): the long-run mean and variance
	// of the short-run mean's distance from the level, in spreads.
	smM, smV float32
	// Anomaly likelihood: long-run level and spread of the raw score, and its short-run average.
	lmean, lvar float32
	lshort      float32
	lsvar       float32                 // and that average's spread around the long-run level (EWMA of squares)
	cadence     float32                 // usual time between readings, seconds (EWMA)
	run         int32                   // identical consecutive values, including the last
	out         int32                   // consecutive values beyond the clip bound: + above, - below
	maxRun      int32                   // longest run of one value seen so far
	quiet       int32                   // readings left in the refractory period after a detection
	long        float32                 // the long interval, seconds: only one in a hundred is longer
	rz          float32                 // the device scorer's: the last value's deviation from the reference, in spreads
	ev          float32                 // the device scorer's: short average of its squared deviation, clipped
	tail        [len(tailEdges)]float32 // how often the raw z reached each edge
	onsetSec    [onsetsKept]uint32      // the last large excursions (Unix seconds), for daily habits and rhythms
	smWait      int16                   // readings before the sustained scorer may detect again
	v2armed     bool
	smArmed     bool             // the sustained scorer may detect
	inDevice    bool             // the series' device had its device alert open at the previous reading
	together    bool             // at the previous reading its device's metrics moved together (device.go): no burst
	stuckRun    bool             // the current run made a stuck alert
	stuckSeen   bool             // stuckVal is set
	moved       bool             // the series ever changed value (a constant series is not "stuck")
	shifted     bool             // the last update restarted the baseline at a new level
	hasPrev     bool             // prevLevel is set
	tailK       int8             // 1 + the highest edge the previous raw z reached (0: none)
	onsetI      int8             // where the next onset goes in onsetSec and onsetEdge
	onsetEdge   [onsetsKept]int8 // their highest edges
	repeats     uint16           // how often a reading repeats the previous value, of 65,536 (finished runs only)
}

// Observe updates the series with value v at ts and returns the strongest
// finding of the scorers.
func (s *Series) Observe(cfg *Config, metric string, ts time.Time, v float64) Finding {
	// Static limits first: a later scorer replaces a finding only with a
	// strictly higher score, so a crossed limit (score 1) always names the kind.
	best := limit(cfg, metric, v)
	t := ts.UnixNano()
	dt := 0.0 // since the newest reading before; 0 for a late one, so it weighs nothing in the daily profile
	if s.lastTS != 0 {
		dt = max(0, float64(t-s.lastTS)/1e9)
	}
	slot := seasonSlot(t)
	off := s.season.offset(slot)
	x := v - off // the value without the usual deviation of its time of day
	// Every expected range is the level's, or the limits', shifted by the
	// time of day's offset (stillOff reads the level back from it).
	st := s.stuck(cfg, v)
	if st.Score > best.Score {
		best = st
		best.Low += off
		best.High += off
	}
	if f := s.likelihood(cfg, s.zscore(cfg, v, x), t); f.Score > best.Score {
		f.Low += off
		f.High += off
		best = f
	}
	sd := s.sd()
	sp := s.spreadChange(cfg, v, x, sd, t)
	st.Hold = st.Hold || sp.Hold // an open spread alert lasts as long as the change
	if f := sp; f.Score > best.Score {
		f.Low += off
		f.High += off
		best = f
	}
	sh := s.shapeChange(cfg, x, sd, t)
	st.Hold = st.Hold || sh.Hold
	if f := sh; f.Score > best.Score {
		f.Low += off
		f.High += off
		best = f
	}
	sm := s.sustained(cfg, v, sd, t)
	st.Hold = st.Hold || sm.Hold // an open sustained alert lasts as long as the deviation
	if f := sm; f.Score > best.Score {
		f.Low += off
		f.High += off
		best = f
	}
	if f := s.gap(cfg, ts); f.Score > best.Score {
		f.Low += off
		f.High += off
		best = f
	}
	if cfg.Extremes {
		if f := s.extremes.observe(t, v, x-s.mean, sd, cfg.AlphaMin, s.n > int64(cfg.Warmup), !s.together); f.Score > 0 {
			// One event, one detection: the likelihood rests too.
			s.quiet = max(s.quiet, refractory)
			if f.Kind == KindBurst { // the likelihood's expected range
				f.Low, f.High = s.mean-cfg.Z*sd+off, s.mean+cfg.Z*sd+off
			}
			if f.Score > best.Score {
				best = f
			}
		}
	}
	if s.alert.open || s.quiet > 0 || best.Score >= cfg.OpenScore {
		s.season.pause(t)
	}
	if s.n > 0 && s.season.learn(slot, t, dt, v, max(1/float64(s.n), cfg.AlphaMin), cfg.Z, t < s.season.hold) {
		// From the next reading on, values lose their time of day's
		// offset: the level and its spread restart from those the
		// profile implies (the spread learned so far includes the daily
		// swing the profile now removes).
		x = v - s.season.offset(slot)
		s.mean, s.varc, s.last = s.season.level, s.season.varDeso, x
		s.restartSpread()
		s.shape = shapes{} // the windows lose their daily slope
	}
	mean, sd := s.mean, s.sd() // the expected range before v, for a shift
	s.update(cfg, v, x)
	if s.shifted {
		// shiftRun values in a row beyond the expected range are a level
		// shift, even where the rest after an earlier detection (a spike,
		// a noise burst) zeroed their scores: the series now lives at
		// another level.
		s.shifted = false
		if best.Score < shiftScore {
			best = Finding{Score: shiftScore, Kind: KindShift, Low: mean - cfg.Z*sd + off, High: mean + cfg.Z*sd + off}
			s.quiet = refractory
		}
	}
	best.Hold = best.Hold || st.Hold || s.stillOff(cfg, v, off, t)
	return best
}

// offHold is how far, in the spreads of the level when the alert opened,
// the short-run mean of the values must stay from that level for the
// series' open alert to stay open.
const offHold = 2

// stillOff reports whether the values' short-run mean (about fifty
// readings, in raw units with the time of day's offset off) and the value
// v itself still lie more than offHold spreads from the level the open
// alert started from, on the same side, within maxHold of its start: the
// fault lasts, though the level has since moved toward it. (The short-run
// mean alone is not enough: after a large shift and its return, the level
// and that mean lag the return for minutes.) The alert's expected range is that level ± -detect.z spreads
// for every kind but the extremes' and the static limits'.
func (s *Series) stillOff(cfg *Config, v, off float64, t int64) bool {
	a := &s.alert
	if !a.held(t) || a.kind == KindRange || a.kind == KindLevel || a.kind == KindLimit {
		return false
	}
	level, sd := (a.low+a.high)/2, (a.high-a.low)/(2*cfg.Z)
	m := s.mean + float64(s.v2z) + off - level
	return math.Abs(m) > offHold*sd && (v-level)*m > 0
}

// step is the change from the previous reading: the smaller of the change
// in raw values and the change without the time of day's offsets, so
// neither a learned daily switch nor the jump between two slots' offsets
// on a smooth daily swing counts as a sudden change.
func (s *Series) step(raw, v float64) float64 {
	a, b := v-s.last, raw-s.raw
	if math.Abs(b) < math.Abs(a) {
		return b
	}
	return a
}

// sd is the spread with a floor, so a near-constant series does not turn
// rounding noise into huge z-scores.
func (s *Series) sd() float64 {
	floor := 1e-9 + 1e-6*math.Abs(s.mean)
	return max(math.Sqrt(s.varc), floor)
}

// update folds v (raw less its time of day's offset) into the level and
// spread estimates. Values beyond Z standard deviations are clipped first,
// so outliers barely move the baseline while a lasting level shift is
// still learned, slowly.
func (s *Series) update(cfg *Config, raw, v float64) {
	if s.n > 0 {
		// The step spread learns from clipped steps, like the level.
		st := s.step(raw, v)
		if s.n > int64(cfg.Warmup) && s.dvar > 0 {
			b := cfg.Z * math.Sqrt(s.dvar)
			st = min(max(st, -b), b)
		}
		a := max(1/float64(s.n), cfg.AlphaMin)
		s.dvar = (1-a)*s.dvar + a*st*st
		if raw == s.raw {
			s.run++
		} else {
			// A run that made a stuck alert is not the series' habit.
			if !s.stuckRun {
				s.maxRun = max(s.maxRun, s.run)
				s.learnRepeats(a)
			}
			s.stuckRun = false
			s.run = 1
			s.moved = true
		}
	} else {
		s.run = 1
	}
	s.last = v
	s.raw = raw
	s.n++
	if s.n == 1 {
		s.mean = v
		return
	}
	alpha := max(1/float64(s.n), cfg.AlphaMin)
	x := v
	if s.n > int64(cfg.Warmup) {
		bound := cfg.Z * s.sd()
		x = min(max(v, s.mean-bound), s.mean+bound)
		// A run of values beyond the bound on one side is a new level,
		// not a string of outliers: start the baseline again from it.
		switch {
		case v > s.mean+bound:
			s.out = max(s.out, 0) + 1
		case v < s.mean-bound:
			s.out = min(s.out, 0) - 1
		default:
			s.out = 0
		}
		if s.out >= shiftRun || s.out <= -shiftRun {
			// Back at the level before the last restart: the end of that
			// shift, not a new one.
			back := s.hasPrev && math.Abs(v-s.prevLevel) <= bound
			s.prevLevel, s.hasPrev, s.shifted = s.mean, true, !back
			d := v - s.mean
			s.mean = v
			s.v2z = 0 // the short-run mean's distance is from the new level
			s.varc = max(s.varc, d*d/(cfg.Z*cfg.Z))
			s.out = 0
			s.season.pause(s.lastTS)
			return
		}
	}
	d := x - s.mean
	dv := d
	if s.n > int64(cfg.Warmup) {
		b := varClip * s.sd()
		dv = min(max(d, -b), b)
	}
	s.mean += alpha * d
	s.varc = (1 - alpha) * (s.varc + alpha*dv*dv)
}
