package detect

import "math"

// Daily cycle: the series learns its usual value at each time of day (from
// the readings' timestamps, UTC), in seasonSlots slots. Once a series has
// been watched for seasonMinSpan and the profile explains much of its
// spread, the scorers and the level see the value minus its time of day's
// offset (the slot's usual value less the average of all slots): a value
// usual for the hour (busy afternoons, a heater's daily schedule) scores
// low, and one unusual for the hour scores high even when it would be
// ordinary at another time.
const (
	seasonSlots    = 96                  // 15-minute slots
	seasonSlotSecs = 86400 / seasonSlots // seconds per slot
	seasonMinSpan  = 2 * 86400           // seconds watched before the profile may be used
	seasonDayRate  = 0.5                 // weight of a new day in a slot's usual value (the first days count equally)
	seasonOn       = 0.5                 // profile used when it leaves this share of the variance or less
	seasonOff      = 0.7                 // and given up above this share
)

// season is a series' daily profile: about 460 bytes.
type season struct {
	slot    [seasonSlots]float32 // usual value at each slot, less ref
	known   [(seasonSlots + 63) / 64]uint64
	nknown  int32
	last    float32 // offset used for the previous reading
	on      bool    // profile in use
	first   int64   // time of the first reading, Unix seconds
	ref     float64 // the first value: slots hold differences from it, for float32's precision
	sum     float64 // sum of the known slots
	varRaw  float64 // EWMA of (v - daily average)²
	varDeso float64 // EWMA of (v - slot's usual value)²
	level   float64 // EWMA of the values less their offsets: the level the profile implies
	nlevel  int64
	hold    int64 // Unix nanoseconds before which the profile does not learn
}

// seasonHold is how long the profile stops learning after a sign of an
// anomaly (a detection, an open alert, a restarted baseline), so an
// anomalous hour is not learned as that hour's habit.
const seasonHold = int64(3600e9)

func (p *season) pause(t int64) { p.hold = max(p.hold, t+seasonHold) }

func seasonSlot(unixNano int64) int {
	sec := unixNano / 1e9 % 86400
	if sec < 0 {
		sec += 86400
	}
	return int(sec / seasonSlotSecs)
}

func (p *season) isKnown(slot int) bool { return p.known[slot/64]&(1<<(slot%64)) != 0 }

// off is slot's offset from the daily average.
func (p *season) off(slot int) float64 {
	return float64(p.slot[slot]) - p.sum/float64(p.nknown)
}

// offset returns what to subtract from a value at slot: the slot's
// offset while the profile is in use (the previous reading's for a slot
// not learned yet), else 0.
func (p *season) offset(slot int) float64 {
	if !p.on {
		return 0
	}
	if p.isKnown(slot) {
		p.last = float32(p.off(slot))
	}
	return float64(p.last)
}

// learn folds value v, seen dt seconds after the previous reading at slot,
// into the profile, given the minimum EWMA weight.
// It reports whether the profile has just come into use.
func (p *season) learn(slot int, ts int64, dt, v, alpha, clipZ float64, held bool) (started bool) {
	sec := ts / 1e9
	if p.nknown == 0 {
		p.first, p.ref = sec, v
	}
	rel := v - p.ref
	if math.IsInf(rel, 0) || math.IsNaN(rel) {
		return false
	}
	if held {
		// After a sign of an anomaly only the slots learn, clipped as
		// always (so the anomaly moves them little); spreads, level and
		// new slots wait. A slot that is off (learned from a slow swing
		// that happened to pass at that hour) is thus corrected even
		// though the deviation it causes holds the profile: a frozen
		// slot would raise the same false alert at that hour every day.
		if p.isKnown(slot) && !math.IsInf(p.varDeso, 1) {
			p.learnSlot(slot, sec, dt, rel, clipZ)
		}
		return false
	}
	if !p.isKnown(slot) {
		p.slot[slot] = float32(rel)
		p.sum += float64(p.slot[slot])
		p.known[slot/64] |= 1 << (slot % 64)
		p.nknown++
		if p.nknown == 1 {
			p.varDeso = math.Inf(1) // no evidence yet
		}
	} else {
		// How well the slot predicts v, against the daily average.
		d, a := rel-float64(p.slot[slot]), rel-p.sum/float64(p.nknown)
		p.level += max(alpha, 1/float64(p.nlevel+1)) * (v - p.off(slot) - p.level)
		p.nlevel++
		if math.IsInf(p.varDeso, 1) {
			p.varDeso, p.varRaw = d*d, a*a
		}
		p.varDeso += alpha * (d*d - p.varDeso)
		p.varRaw += alpha * (a*a - p.varRaw)
		p.learnSlot(slot, sec, dt, rel, clipZ)
	}
	switch {
	case sec-p.first < seasonMinSpan:
		p.on = false
	case !p.on && p.varDeso < seasonOn*p.varRaw:
		p.on = true
		return true
	case p.on && p.varDeso > seasonOff*p.varRaw:
		p.on = false
	}
	return false
}

// learnSlot moves slot's usual value towards rel (the value less ref), a
// deviation counting at most clipZ of the profile's spreads: one outlier
// barely moves its slot.
func (p *season) learnSlot(slot int, sec int64, dt, rel, clipZ float64) {
	d := rel - float64(p.slot[slot])
	if b := clipZ * math.Sqrt(p.varDeso); d > b {
		d = b
	} else if d < -b {
		d = -b
	}
	days := float64((sec-p.first)/86400 + 1)
	w := max(seasonDayRate, 1/days) * min(1, dt/seasonSlotSecs)
	old := p.slot[slot]
	p.slot[slot] += float32(w * d)
	p.sum += float64(p.slot[slot] - old)
}
