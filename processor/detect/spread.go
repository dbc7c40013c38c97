package detect

import "math"

// Spread change: a series whose values start to swing wider or narrower
// around their level (a vibration that doubles, a machine rhythm that
// flattens, noise that grows) while the level itself and each reading stay
// ordinary. The short-run mean of the squared distance from the short-run
// mean, in the level's spreads (each reading's clipped at spreadClip, so a
// spike, which the other scorers report, moves it little), is
// judged on a log scale against its own long-run mean and spread, learned
// like the likelihood's (and from values clipped at spreadLearnClip of that
// spread, so a change does not lift its own bar). One change, one
// detection: after any detection of the series the scorer waits until the
// short-run spread is back within one spread of usual.
const (
	spreadAlpha     = 0.02 // weight of a new reading in the short-run mean of z² (about 100 readings)
	spreadClip      = 9    // z² counted at most (3 spreads)
	spreadWarmup    = 300  // readings before the scorer may detect
	spreadLearnClip = 3    // deviations of the log beyond this many of its spreads count as this many in its long-run statistics
	spreadFloor     = 1e-4 // added to the log's variance: a very steady series does not alert on a blip
	stuckRunSpread  = 2    // a narrowing while the value has repeated this often is left to the stuck scorer
)

// KindSpread is the alert kind of the spread-change scorer.
const KindSpread = "spread"

// spreadChange folds in x (value v less its time of day's offset) and
// scores the change of the series' spread.
func (s *Series) spreadChange(cfg *Config, v, x float64) Finding {
	if s.n < 2 {
		return Finding{Kind: KindSpread}
	}
	sd := s.sd()
	z := (x - s.mean) / sd
	v2, m, vr := float64(s.v2), float64(s.v2m), float64(s.v2v)
	if v2 == 0 {
		v2 = 1
	}
	// The spread around the short-run mean, not the level: a value that
	// settles off the level (a small shift, a sensor stuck off its
	// level) moves the short-run mean, not the spread.
	zm := float64(s.v2z)
	zd := z - zm
	s.v2z = float32(zm + spreadAlpha*(math.Max(-3, math.Min(3, z))-zm))
	v2 += spreadAlpha * (math.Min(zd*zd, spreadClip) - v2)
	d := math.Log(v2+1e-3) - m
	zv := d / math.Sqrt(vr+spreadFloor)
	if s.n > spreadWarmup {
		if b := spreadLearnClip * math.Sqrt(vr+spreadFloor); math.Abs(d) > b {
			d = math.Copysign(b, d)
		}
	}
	a := math.Max(1/float64(s.n), likelihoodAlpha)
	s.v2, s.v2m, s.v2v = float32(v2), float32(m+a*d), float32((1-a)*(vr+a*d*d))
	if math.Abs(zv) < 1 {
		s.v2armed = true // back to its usual spread: the next change may be detected
	}
	if s.n <= spreadWarmup || s.quiet > 0 || s.alert.open {
		s.v2armed = false // one event, one detection
		return Finding{Kind: KindSpread}
	}
	if !s.v2armed || zv < 0 && s.run >= stuckRunSpread && v == s.raw {
		// A narrowing while the value repeats itself is a stuck
		// sensor's, which the stuck scorer names.
		return Finding{Kind: KindSpread}
	}
	l := tailL(math.Abs(zv))
	f := Finding{Score: l / (l + surpriseHalf), Kind: KindSpread, dev: zv, Low: s.mean - cfg.Z*sd, High: s.mean + cfg.Z*sd}
	if f.Score >= cfg.OpenScore {
		s.quiet = refractory
		s.v2armed = false
	}
	return f
}
