package detect

import "math"

// Window shape: a series whose readings stay in their usual range and
// spread while the shape of their movement changes (a machine rhythm that
// speeds up, a tank that fills in another pattern), in the spirit of
// adaptive-resonance detectors such as ARTime, written from the idea:
//
//   - The last shapeW readings (less the time of day's offset) make a
//     window; its shape is each reading's distance from the window's mean
//     in shapeScale level spreads, clipped to ±1, so a window of noise is
//     a small shape and the level itself does not count.
//   - The series keeps at most shapeK categories of shapes (prototypes).
//     A window's novelty is its mean absolute distance from the nearest
//     one. A window more novel than shapeVigilance spreads above the usual
//     novelty founds a new category while there is room (the vigilance
//     follows the series' own novelty); otherwise the nearest category
//     learns it (weight 1/count, at least shapeLearn).
//   - The short-run average of the novelty (about ten windows) is judged
//     against its long-run mean and spread like the spread-change
//     statistic, and scored on the likelihood's scale. A single odd window
//     (a spike) is the level scorers' to report: only a lasting change of
//     shape counts here.
//
// The categories start over when the daily profile takes over (the
// windows lose their daily slope). One change, one detection: an open
// shape alert stays open while the score stays at or above
// -detect.resolve-score (up to maxHold), and the scorer then waits until
// the average is back within one spread of usual.
const (
	shapeW         = 16   // readings in a window
	shapeK         = 8    // categories kept
	shapeScale     = 3    // a window's shape is in units of this many level spreads
	shapeVigilance = 2    // novelty, in its spreads above its mean, that founds a new category
	shapeShort     = 0.1  // weight of a window in the short-run average of novelty
	shapeLearn     = 0.01 // smallest weight of a window in its category
	shapeQuant     = 1 << 14
)

// KindShape is the alert kind of the window-shape scorer.
const KindShape = "shape"

// shapes is a series' window and categories: 368 bytes.
type shapes struct {
	anchor   float64               // what the readings in win are kept relative to
	win      [shapeW]float32       // the last readings, less the anchor
	cats     [shapeK][shapeW]int16 // the categories' shapes, in 1/shapeQuant
	count    [shapeK]uint8         // windows each category learned, at most 1/shapeLearn
	mean, vr float32               // long-run mean and variance of the novelty
	short    float32               // short-run average of the novelty
	svr      float32               // and its variance around the long-run mean
	n        int32                 // windows judged
	next     uint8                 // where the next reading goes in win
	full     uint8                 // readings in win, up to shapeW
	ncat     uint8                 // categories founded
	armed    bool                  // the scorer may detect
}

// shapeChange folds x (value v less its time of day's offset) in, with the
// level's spread sd, and scores the change of the windows' shape.
func (s *Series) shapeChange(cfg *Config, x, sd float64, t int64) Finding {
	h := &s.shape
	// Kept as distances from an anchor, one of the window's own
	// readings, so float32 holds them exactly enough at any level; a
	// window's shape does not depend on the anchor.
	if h.next == 0 {
		for i := range h.win {
			h.win[i] = float32(float64(h.win[i]) + h.anchor - x)
		}
		h.anchor = x
	}
	h.win[h.next] = float32(x - h.anchor)
	h.next = (h.next + 1) % shapeW
	if h.full < shapeW {
		h.full++
		return Finding{Kind: KindShape}
	}
	var f [shapeW]float64
	m := 0.0
	for _, v := range h.win {
		m += float64(v)
	}
	m /= shapeW
	for i := range f {
		f[i] = max(-1, min(1, (float64(h.win[(int(h.next)+i)%shapeW])-m)/(shapeScale*sd)))
	}
	best, r := -1, 0.0
	for k := range int(h.ncat) {
		d := 0.0
		for i, c := range h.cats[k] {
			d += math.Abs(f[i] - float64(c)/shapeQuant)
		}
		if best < 0 || d < r {
			best, r = k, d
		}
	}
	r /= shapeW
	h.n++
	a := max(1/float64(h.n), likelihoodAlpha)
	lm, lsd := float64(h.mean), math.Sqrt(float64(h.vr)+spreadFloor)
	if best < 0 || r > lm+shapeVigilance*lsd && int(h.ncat) < shapeK {
		k := int(h.ncat)
		for i := range f {
			h.cats[k][i] = int16(math.Round(f[i] * shapeQuant))
		}
		h.count[k], h.ncat = 1, h.ncat+1
	} else {
		c := &h.cats[best]
		h.count[best] = uint8(min(int(h.count[best])+1, int(1/shapeLearn)))
		w := max(1/float64(h.count[best]), shapeLearn)
		for i := range f {
			v := float64(c[i]) / shapeQuant
			c[i] = int16(math.Round((v + w*(f[i]-v)) * shapeQuant))
		}
	}
	// The long-run statistics learn like the spread-change scorer's.
	judge(r, &h.mean, &h.vr, a, h.n > spreadWarmup)
	short := float64(h.short) + shapeShort*(r-float64(h.short))
	h.short = float32(short)
	ds := short - lm
	z := ds / math.Sqrt(float64(h.svr)+spreadFloor*shapeShort/(2-shapeShort))
	h.svr = float32((1 - a) * (float64(h.svr) + a*ds*ds))
	if s.alert.kind == KindShape && s.alert.held(t) && z > 0 && spreadScore(z) >= cfg.ResolveScore {
		// The change lasts: its alert stays open.
		h.armed = false
		return Finding{Kind: KindShape, Hold: true}
	}
	if math.Abs(z) < 1 {
		h.armed = true // back to usual: the next change may be detected
	}
	if h.n <= spreadWarmup || s.quiet > 0 || s.alert.open {
		h.armed = false // one event, one detection
		return Finding{Kind: KindShape}
	}
	if !cfg.Shape || !h.armed || !(z > 0) {
		return Finding{Kind: KindShape}
	}
	return s.judged(cfg, KindShape, spreadScore(z), z, sd, &h.armed)
}
