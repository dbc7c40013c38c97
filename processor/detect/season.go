package detect

import "math"

// Daily cycle: the series learns its usual deviation from its level at each
// time of day (from the readings' timestamps, UTC), in seasonSlots slots.
// Once a series has been watched for seasonMinSpan and the profile explains
// much of its spread, the scorers and the level see the value minus the
// profile: a value usual for the hour (busy afternoons, a heater's daily
// schedule) scores low, and one unusual for the hour scores high even when
// it would be ordinary at another time.
const (
	seasonSlots    = 96                  // 15-minute slots
	seasonSlotSecs = 86400 / seasonSlots // seconds per slot
	seasonMinSpan  = 2 * 86400           // seconds watched before the profile may be used
	seasonDayRate  = 0.5                 // weight of one day's values in a slot's offset
	seasonOn       = 0.5                 // profile used when it leaves this share of the variance or less
	seasonOff      = 0.7                 // and given up above this share
)

// season is a series' daily profile: about 420 bytes.
type season struct {
	off     [seasonSlots]float32            // usual deviation from the level at each slot
	known   [(seasonSlots + 63) / 64]uint64 // slots that have learned an offset
	last    float32                         // offset used for the previous reading
	on      bool                            // profile in use
	first   int64                           // time of the first reading, Unix seconds
	varRaw  float64                         // EWMA of (v - level)²
	varDeso float64                         // EWMA of (v - level - offset)² over known slots
}

func seasonSlot(unixNano int64) int {
	sec := unixNano / 1e9 % 86400
	if sec < 0 {
		sec += 86400
	}
	return int(sec / seasonSlotSecs)
}

func (p *season) isKnown(slot int) bool { return p.known[slot/64]&(1<<(slot%64)) != 0 }

// offset returns what to subtract from a value at slot: the slot's offset
// while the profile is in use (the previous reading's for a slot not
// learned yet), else 0.
func (p *season) offset(slot int) float64 {
	if !p.on {
		return 0
	}
	if p.isKnown(slot) {
		p.last = p.off[slot]
	}
	return float64(p.last)
}

// learn folds value v, seen dt seconds after the previous reading at slot,
// into the profile, given the series' level and the minimum EWMA weight.
func (p *season) learn(slot int, ts int64, dt, v, level, alpha, clipZ float64) {
	sec := ts / 1e9
	if p.first == 0 {
		p.first = sec
	}
	dev := v - level
	if math.IsInf(dev, 0) || math.IsNaN(dev) {
		return
	}
	p.varRaw += alpha * (dev*dev - p.varRaw)
	if p.isKnown(slot) {
		r := dev - float64(p.off[slot])
		p.varDeso += alpha * (r*r - p.varDeso)
		// Clipped like the level: one outlier barely moves its slot.
		if b := clipZ * math.Sqrt(p.varDeso); r > b {
			r = b
		} else if r < -b {
			r = -b
		}
		w := seasonDayRate * math.Min(1, dt/seasonSlotSecs)
		p.off[slot] += float32(w * r)
	} else {
		p.off[slot] = float32(dev)
		p.known[slot/64] |= 1 << (slot % 64)
		p.varDeso += alpha * (p.varRaw - p.varDeso) // no evidence yet: as bad as none
	}
	switch {
	case sec-p.first < seasonMinSpan:
		p.on = false
	case !p.on && p.varDeso < seasonOn*p.varRaw:
		p.on = true
	case p.on && p.varDeso > seasonOff*p.varRaw:
		p.on = false
	}
}
