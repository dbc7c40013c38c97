package detect

import "math"

// Spread change: a series whose values start to swing wider or narrower
// around their level (a vibration that doubles, a machine rhythm that
// flattens, noise that grows), or to change faster or slower from one
// reading to the next (a rhythm whose period halves), while the level
// itself and each reading stay ordinary. The short-run mean of the squared
// distance from the short-run mean, in the series' own units (each
// reading's clipped at spreadClip level spreads, so a spike, which the
// other scorers report, moves it little), is judged on a log scale against
// its own long-run mean and spread. It is measured in units, not in level
// spreads: the level's spread itself widens during a drift or a shift and
// would make the calm after it look like a narrowing.
//
// The long-run statistics learn from values clipped at spreadLearnClip of
// the log's spread, and its variance as if they lay only spreadVarClip
// away, so a lasting change neither lifts its own bar within minutes nor
// stays unlearned: the long-run mean walks to it. One change, one
// detection: the alert stays open while the score stays at or above
// -detect.resolve-score (up to maxHold), and after any detection of the
// series the scorer waits until the short-run spread is back within one
// spread of usual.
const (
	spreadAlpha     = 0.02 // weight of a new reading in the short-run mean and spread (about 100 readings)
	spreadClip      = 9    // squared distance (or step) counted at most, in its usual variances (3 spreads)
	spreadWarmup    = 300  // readings before the scorer may detect
	spreadLearnClip = 3    // deviations of the log beyond this many of its spreads count as this many in its long-run mean
	spreadVarClip   = 2    // and as this many in its long-run variance
	spreadFloor     = 1e-4 // added to the log's variance: a very steady series does not alert on a blip
	spreadRel       = 1e-3 // added to the short-run variance, in level variances: the log of a constant stays finite
	stuckRunSpread  = 2    // a change while the value has repeated this often is left to the stuck scorer
)

// KindSpread is the alert kind of the spread-change scorer.
const KindSpread = "spread"

// spreadChange folds in x (value v less its time of day's offset) at t
// (Unix nanoseconds), with the level's spread sd, and scores the change of
// the series' spread: of its values around their short-run mean, and of
// its steps from one reading to the next (a rhythm that speeds up or slows
// down at the same amplitude, a wandering series whose noise changes).
// Each is judged on its own; the larger deviation speaks.
func (s *Series) spreadChange(cfg *Config, v, x, sd float64, t int64) Finding {
	if s.n < 2 {
		return Finding{Kind: KindSpread}
	}
	a := max(1/float64(s.n), likelihoodAlpha)
	// The spread around the short-run mean (kept as a distance from the
	// level), not around the level: a value that settles off the level
	// (a small shift, a sensor stuck off its level) moves the short-run
	// mean, not the spread.
	dev := x - s.mean
	zm := float64(s.v2z)
	zd := dev - zm
	s.v2z = float32(zm + spreadAlpha*(max(-3*sd, min(3*sd, dev))-zm))
	zv := s.spreadStat(&s.v2, &s.v2m, &s.v2v, zd, sd*sd, a)
	// The steps, clipped at 3 of their usual spread.
	ssd := max(math.Sqrt(s.dvar), 1e-9+1e-6*math.Abs(s.mean))
	zs := s.spreadStat(&s.s2, &s.s2m, &s.s2v, s.step(v, x), ssd*ssd, a)
	if s.alert.kind == KindSpread && s.alert.held(t) {
		if score, _ := changeScore(cfg, zv, zs); score >= cfg.ResolveScore {
			// The change lasts: its alert stays open.
			s.v2armed = false
			return Finding{Kind: KindSpread, Hold: true}
		}
	}
	if math.Abs(zv) < 1 && math.Abs(zs) < 1 {
		s.v2armed = true // both back to usual: the next change may be detected
	}
	if s.n <= spreadWarmup || s.quiet > 0 || s.alert.open {
		s.v2armed = false // one event, one detection
		return Finding{Kind: KindSpread}
	}
	if !s.v2armed || s.run >= stuckRunSpread && v == s.raw {
		// A change while the value repeats itself is a stuck sensor's,
		// which the stuck scorer names (a value stuck off the level
		// would otherwise read as a wider swing around the short-run
		// mean).
		return Finding{Kind: KindSpread}
	}
	score, pace := changeScore(cfg, zv, zs)
	if pace {
		zv = zs
	}
	f := s.judged(cfg, KindSpread, score, zv, sd, &s.v2armed)
	f.pace = pace
	return f
}

// changeScore is the spread scorer's score of the values' statistic zv
// and the steps' zs, the higher of the two, and whether the steps' it is.
// The steps' has the looser bar (spreadLooks); the values' does not, since
// a level shift also widens their spread around the short-run mean until
// that mean catches up, and would read as a change of spread. Computed
// only where it is needed, not at every reading.
func changeScore(cfg *Config, zv, zs float64) (score float64, pace bool) {
	score = spreadScore(zv)
	if sc := stepSpreadScore(cfg, zs); sc > score {
		return sc, true
	}
	return score, false
}

// judged is the finding of a scorer (kind) whose statistic stands z of
// its spreads off its usual and scores score, with the level's expected
// range (spread sd); when it opens an alert the series rests and the
// scorer disarms (*armed) until it is back to usual.
func (s *Series) judged(cfg *Config, kind string, score, z, sd float64, armed *bool) Finding {
	f := Finding{Score: score, Kind: kind, dev: z, Low: s.mean - cfg.Z*sd, High: s.mean + cfg.Z*sd}
	if f.Score >= cfg.OpenScore {
		s.quiet = refractory
		*armed = false
	}
	return f
}

// spreadStat folds deviation e (usual variance u) into one spread
// statistic: its short-run mean of squares *cur, and the long-run mean *m
// and variance *vr of that mean's log, learned with weight a. It returns
// the log's deviation from its long-run mean, in its spreads.
func (s *Series) spreadStat(cur, m, vr *float32, e, u, a float64) float64 {
	c := float64(*cur)
	if c == 0 {
		c = u
	}
	c += spreadAlpha * (min(e*e, spreadClip*u) - c)
	*cur = float32(c)
	return judge(math.Log(c+spreadRel*u), m, vr, a, s.n > spreadWarmup)
}

// judge returns x's deviation from its long-run mean *m, in its long-run
// spread √(*vr + spreadFloor), and learns both with weight a: once warm
// (past the statistic's warm-up), the mean from x clipped at
// spreadLearnClip spreads and the variance at spreadVarClip, so a lasting
// change is learned by the mean walking to it.
func judge(x float64, m, vr *float32, a float64, warm bool) float64 {
	lm, lv := float64(*m), float64(*vr)
	d := x - lm
	lsd := math.Sqrt(lv + spreadFloor)
	z := d / lsd
	dv := d
	if warm {
		d = max(-spreadLearnClip*lsd, min(spreadLearnClip*lsd, d))
		dv = max(-spreadVarClip*lsd, min(spreadVarClip*lsd, d))
	}
	*m, *vr = float32(lm+a*d), float32((1-a)*(lv+a*dv*dv))
	return z
}

// spreadScore is the score of the short-run spread's deviation zv, in the
// log's spreads, from its usual: the likelihood's scale, both ways.
func spreadScore(zv float64) float64 {
	l := tailL(math.Abs(zv))
	return l / (l + surpriseHalf)
}

// spreadLooks is log10 of the number of readings the spread statistic's
// short-run mean spans, (2-spreadAlpha)/spreadAlpha (about 99). The
// likelihood's bar is a tail probability per reading; the statistic's
// consecutive values share most of their readings, so one that crosses a
// bar of q does so in a run of about that many, and a run makes one
// detection: at a bar that many times q it raises no more detections
// than independent readings would at q.
var spreadLooks = math.Log10((2 - spreadAlpha) / spreadAlpha)

// stepSpreadScore is the score of the steps' spread statistic's deviation
// zs: the likelihood's scale, with its surprise L stretched so that the
// bar of -detect.open-score (L0 = 10 at 0.4) is reached spreadLooks
// sooner, at L0 - spreadLooks. Stretched rather than shifted, so a
// statistic at its usual value still scores 0.
func stepSpreadScore(cfg *Config, zs float64) float64 {
	l0 := surpriseHalf * cfg.OpenScore / (1 - cfg.OpenScore)
	l := tailL(math.Abs(zs)) * l0 / max(l0-spreadLooks, l0/2)
	return l / (l + surpriseHalf)
}

// restartSpread starts the short-run spread again from the level's, when
// the daily profile takes over and values lose their time of day's offset.
func (s *Series) restartSpread() {
	vr := s.varc
	s.v2, s.v2z, s.v2m = float32(vr), 0, float32(math.Log(vr*(1+spreadRel)))
}
