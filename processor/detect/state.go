package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// StateVersion identifies the encoding of a device's detector state that
// AppendDeviceState writes. Bump it with every change to what a series
// keeps (a field added, removed or read differently): RestoreDevice
// refuses a state of another version with ErrStateVersion, and the caller
// discards it, so an older state is never misread.
const StateVersion = 12

// ErrStateVersion: the state was written by another detector version.
var ErrStateVersion = errors.New("detector state of another version")

// stateMagic starts every encoded state, before its version.
const stateMagic = "sfds"

// codec reads or writes each field of the state through one list of
// fields per struct (the state methods), so both directions stay alike.
type codec interface {
	f64(*float64)
	f32(*float32)
	i64(*int64)
	i32(*int32)
	i8(*int8)
	flag(*bool)
	str(*string)
	time(*time.Time)
	fail(string) // the state cannot be right
}

type encoder struct{ b []byte }

func (e *encoder) f64(v *float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(*v)) }
func (e *encoder) f32(v *float32) { e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(*v)) }
func (e *encoder) i64(v *int64)   { e.b = binary.AppendVarint(e.b, *v) }
func (e *encoder) i32(v *int32)   { e.b = binary.AppendVarint(e.b, int64(*v)) }
func (e *encoder) i8(v *int8)     { e.b = append(e.b, byte(*v)) }
func (e *encoder) flag(v *bool) {
	var b byte
	if *v {
		b = 1
	}
	e.b = append(e.b, b)
}
func (e *encoder) str(v *string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*v)))
	e.b = append(e.b, *v...)
}

// time keeps the instant in UTC (readings' times are UTC); the zero time
// stays zero.
func (e *encoder) time(v *time.Time) {
	zero := v.IsZero()
	e.flag(&zero)
	if !zero {
		n := v.UnixNano()
		e.i64(&n)
	}
}

func (e *encoder) fail(string) {}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail("detector state: truncated") // an earlier error stays the one reported
		return make([]byte, n)
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
}
func (d *decoder) f64(v *float64) { *v = math.Float64frombits(binary.LittleEndian.Uint64(d.take(8))) }
func (d *decoder) f32(v *float32) { *v = math.Float32frombits(binary.LittleEndian.Uint32(d.take(4))) }
func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("detector state: bad integer")
		return 0
	}
	d.b = d.b[n:]
	return x
}
func (d *decoder) i64(v *int64) { *v = d.varint() }
func (d *decoder) i32(v *int32) {
	x := d.varint()
	if x != int64(int32(x)) {
		d.fail("detector state: integer out of range")
	}
	*v = int32(x)
}
func (d *decoder) i8(v *int8)   { *v = int8(d.take(1)[0]) }
func (d *decoder) flag(v *bool) { *v = d.take(1)[0] != 0 }
func (d *decoder) str(v *string) {
	if d.err != nil {
		return
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.fail("detector state: bad string")
		return
	}
	*v = string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
}
func (d *decoder) time(v *time.Time) {
	var zero bool
	d.flag(&zero)
	if zero {
		*v = time.Time{}
		return
	}
	var n int64
	d.i64(&n)
	*v = time.Unix(0, n).UTC()
}

// state lists the fields of a series (its config and budget pointers
// aside: the detector sets them).
func (s *Series) state(c codec) {
	c.i64(&s.n)
	for _, f := range []*float64{&s.mean, &s.varc, &s.last, &s.raw, &s.dvar} {
		c.f64(f)
	}
	for _, f := range []*int32{&s.run, &s.out, &s.maxRun, &s.quiet} {
		c.i32(f)
	}
	c.i64(&s.lastTS)
	c.f32(&s.cadence)
	c.f32(&s.long)
	c.f64(&s.stuckVal)
	for _, f := range []*bool{&s.stuckRun, &s.stuckSeen, &s.moved, &s.shifted, &s.hasPrev, &s.v2armed, &s.smArmed, &s.inDevice, &s.together} {
		c.flag(f)
	}
	c.f64(&s.prevLevel)
	for i := range s.tail {
		c.f32(&s.tail[i])
	}
	c.i8(&s.tailK)
	c.i8(&s.onsetI)
	for i := range s.onsetSec {
		sec := int64(s.onsetSec[i])
		c.i64(&sec)
		if sec != int64(uint32(sec)) {
			c.fail("detector state: onset time out of range")
		}
		s.onsetSec[i] = uint32(sec)
		c.i8(&s.onsetEdge[i])
	}
	s.alert.state(c)
	s.season.state(c)
	s.extremes.state(c)
	c.i64(&s.rn)
	c.f64(&s.rmean)
	c.f64(&s.rvar)
	c.f32(&s.rz)
	c.f32(&s.ev)
	for _, f := range []*float32{&s.v2z, &s.v2, &s.v2m, &s.v2v, &s.s2, &s.s2m, &s.s2v, &s.smM, &s.smV, &s.lmean, &s.lvar, &s.lshort, &s.lsvar} {
		c.f32(f)
	}
	s.smWait = int16(bounded(c, int32(s.smWait), math.MaxInt16, "detector state: sustained scorer's wait out of range"))
	s.repeats = uint16(bounded(c, int32(s.repeats), math.MaxUint16, "detector state: repeat rate out of range"))
	s.shape.state(c)
}

func (h *shapes) state(c codec) {
	c.f64(&h.anchor)
	for i := range h.win {
		c.f32(&h.win[i])
	}
	for k := range h.cats {
		for i := range h.cats[k] {
			v := int32(h.cats[k][i]) + shapeQuant
			h.cats[k][i] = int16(bounded(c, v, 2*shapeQuant, "detector state: shape category out of range") - shapeQuant)
		}
		h.count[k] = uint8(bounded(c, int32(h.count[k]), int32(1/shapeLearn), "detector state: shape category count out of range"))
	}
	for _, f := range []*float32{&h.mean, &h.vr, &h.short, &h.svr} {
		c.f32(f)
	}
	c.i32(&h.n)
	h.next = uint8(bounded(c, int32(h.next), shapeW-1, "detector state: shape window position out of range"))
	h.full = uint8(bounded(c, int32(h.full), shapeW, "detector state: shape window length out of range"))
	h.ncat = uint8(bounded(c, int32(h.ncat), shapeK, "detector state: shape categories out of range"))
	c.flag(&h.armed)
}

// bounded codes v, a field kept in fewer than 32 bits, as an int32: one
// read back outside [0, most] fails the state with msg and reads as 0.
func bounded(c codec, v, most int32, msg string) int32 {
	c.i32(&v)
	if v < 0 || v > most {
		c.fail(msg)
		return 0
	}
	return v
}

// state lists the fields of a device's multivariate record.
func (v *device) state(c codec) {
	set := int64(v.set)
	c.i64(&set)
	v.set = uint64(set)
	c.i64(&v.n)
	c.f64(&v.lmean)
	c.f64(&v.lvar)
	c.f64(&v.last)
	c.i32(&v.other)
	v.alert.state(c)
	n := int32(len(v.contributors))
	c.i32(&n)
	if n < 0 || n > sensor.MaxContributors {
		c.fail("detector state: bad contributor count")
		return
	}
	if len(v.contributors) != int(n) {
		v.contributors = make([]sensor.Contributor, n)
	}
	for i := range v.contributors {
		x := &v.contributors[i]
		c.str(&x.Metric)
		c.f64(&x.Share)
		c.f64(&x.Z)
	}
}

func (a *alertState) state(c codec) {
	c.flag(&a.open)
	c.flag(&a.fall)
	c.flag(&a.pace)
	c.i32(&a.below)
	c.time(&a.startedAt)
	c.str(&a.id)
	c.str(&a.kind)
	c.str(&a.severity)
	c.f64(&a.low)
	c.f64(&a.high)
	c.f64(&a.peak)
	c.i64(&a.quietSince)
	c.f64(&a.quietV)
	c.flag(&a.muted)
}

func (s *season) state(c codec) {
	for i := range s.slot {
		c.f32(&s.slot[i])
	}
	for i := range s.known {
		k := int64(s.known[i])
		c.i64(&k)
		s.known[i] = uint64(k)
	}
	c.i32(&s.nknown)
	c.f32(&s.last)
	c.flag(&s.on)
	c.i64(&s.first)
	for _, f := range []*float64{&s.ref, &s.sum, &s.varRaw, &s.varDeso, &s.level} {
		c.f64(f)
	}
	c.i64(&s.nlevel)
	c.i64(&s.hold)
}

func (e *extremes) state(c codec) {
	c.i64(&e.first)
	for _, f := range []*float64{&e.lo, &e.hi, &e.mean, &e.mlo, &e.mhi, &e.quiet2, &e.burst} {
		c.f64(f)
	}
	for i := range e.moves {
		x := &e.moves[i]
		c.f64(&x.peak)
		c.f64(&x.top[0])
		c.f64(&x.top[1])
		c.flag(&x.in)
		c.flag(&x.fired)
	}
	c.flag(&e.started)
	c.i8(&e.rest)
}

func (b *budget) state(c codec) {
	c.time(&b.windowEnd)
	c.i32(&b.opened)
	c.i32(&b.heldBack)
	c.flag(&b.summaryOpen)
	c.time(&b.summaryStart)
	c.str(&b.summaryID)
	c.str(&b.site)
}

// AppendDeviceState appends the state of every series of device (and its
// alert budget) to buf, versioned, and returns it with the number of
// series in it. site is the device's site (rules may depend on it).
// Restoring it with RestoreDevice into any detector of the same
// configuration continues the device exactly where this one stands. The
// series go in metric order, so equal states encode equally.
func (d *Detector) AppendDeviceState(buf []byte, device, site string) ([]byte, int) {
	var metrics []string
	for k := range d.series {
		if k.device == device {
			metrics = append(metrics, k.metric)
		}
	}
	return d.appendState(buf, device, site, metrics)
}

// DeviceStates encodes the state of each device in devices (device →
// site) with one pass over the series, and calls emit with each device's
// encoding and number of series; buf is reused between calls (emit must
// copy it to keep it). Devices without series are skipped.
func (d *Detector) DeviceStates(devices map[string]string, emit func(device string, state []byte, series int)) {
	metrics := map[string][]string{}
	for k := range d.series {
		if _, ok := devices[k.device]; ok {
			metrics[k.device] = append(metrics[k.device], k.metric)
		}
	}
	var buf []byte
	for dev, ms := range metrics {
		var n int
		buf, n = d.appendState(buf[:0], dev, devices[dev], ms)
		emit(dev, buf, n)
	}
}

func (d *Detector) appendState(buf []byte, device, site string, metrics []string) ([]byte, int) {
	slices.Sort(metrics)
	e := &encoder{b: append(buf, stateMagic...)}
	e.b = binary.AppendUvarint(e.b, StateVersion)
	e.str(&site)
	b := d.budgets[device]
	has := b != nil
	e.flag(&has)
	if has {
		b.state(e)
	}
	e.b = binary.AppendUvarint(e.b, uint64(len(metrics)))
	for _, m := range metrics {
		s := d.series[seriesKey{device, m}]
		e.str(&m)
		linked := s.budget != nil
		e.flag(&linked)
		s.state(e)
	}
	dv := d.devices[device]
	hasDevice := dv != nil
	e.flag(&hasDevice)
	if hasDevice {
		dv.state(e)
	}
	return e.b, len(metrics)
}

// StateVersionOf returns the version a state was written with (0: not a
// detector state).
func StateVersionOf(state []byte) uint64 {
	if !strings.HasPrefix(string(state[:min(len(state), len(stateMagic))]), stateMagic) {
		return 0
	}
	v, n := binary.Uvarint(state[len(stateMagic):])
	if n <= 0 {
		return 0
	}
	return v
}

// RestoreDevice replaces the state of device's series (and its alert
// budget) with one AppendDeviceState wrote, and returns the number of
// series restored. A state of another version is refused with
// ErrStateVersion, a damaged one with another error; either way the
// detector is left as it was.
func (d *Detector) RestoreDevice(device string, state []byte) (int, error) {
	if v := StateVersionOf(state); v != StateVersion {
		return 0, fmt.Errorf("%w: version %d, this detector reads %d", ErrStateVersion, v, StateVersion)
	}
	_, n := binary.Uvarint(state[len(stateMagic):]) // the version, checked
	dec := &decoder{b: state[len(stateMagic)+n:]}
	var site string
	dec.str(&site)
	var has bool
	dec.flag(&has)
	var b *budget
	if has {
		b = &budget{}
		b.state(dec)
	}
	count, k := binary.Uvarint(dec.b)
	if dec.err == nil && (k <= 0 || count > uint64(len(dec.b))) {
		dec.err = errors.New("detector state: bad series count")
	}
	if dec.err != nil {
		return 0, dec.err
	}
	dec.b = dec.b[k:]
	restored := make(map[string]*Series, count)
	for range count {
		var metric string
		var linked bool
		dec.str(&metric)
		dec.flag(&linked)
		s := &Series{}
		s.state(dec)
		if dec.err != nil {
			return 0, dec.err
		}
		if s.onsetI < 0 || int(s.onsetI) >= onsetsKept {
			return 0, errors.New("detector state: onset index out of range")
		}
		s.cfg = d.forSeries(device, site, metric)
		if linked {
			if b == nil {
				return 0, errors.New("detector state: a series linked to a missing budget")
			}
			s.budget = b
		}
		restored[metric] = s
	}
	var hasDevice bool
	dec.flag(&hasDevice)
	dv := newDevice(hasDevice)
	if dv != nil {
		dv.state(dec)
	}
	if dec.err != nil {
		return 0, dec.err
	}
	if len(dec.b) != 0 {
		return 0, errors.New("detector state: trailing bytes")
	}
	d.ForgetDevices(map[string]bool{device: true})
	for m, s := range restored {
		d.series[seriesKey{device, m}] = s
		if s.alert.open && !s.alert.muted {
			d.open++
		}
	}
	if b != nil {
		d.budgets[device] = b
	}
	if dv != nil {
		d.devices[device] = dv
		if dv.alert.open && !dv.alert.muted {
			d.open++
		}
	}
	return len(restored), nil
}
