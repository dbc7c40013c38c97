package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// The device scorer combines the evidence of a device's metrics. A fault of
// a machine moves several of its sensors at once (a closing valve lowers
// the flow, raises the pressure and changes the pump's current and
// vibration); each move may be too small to alert on its own, their sum is
// not. It also keeps one alert open for as long as the device stays out of
// its normal regime, where the series' own alerts mark onsets.
//
//   - Each metric keeps a reference baseline of its own: a slow robust
//     level and spread (winsorized EWMAs, like the series' baseline but
//     never restarted at a new level), learned only while the device is
//     in its normal regime and frozen while a device alert is open, so a
//     lasting fault is not absorbed into the baseline it is measured
//     against.
//   - A metric's evidence is a short average (about ten readings) of its
//     squared deviation from that reference, a deviation counting at most
//     deviceClip spreads; the device's raw score is the log of the mean
//     evidence over its metrics: Hotelling's T² with a diagonal
//     covariance, made robust. (A full covariance, which would learn that
//     a machine's load moves its current and temperature together, did
//     worse on every data set we have: the correlations learned online
//     from a few hundred readings whiten real faults away too.)
//   - That raw score is judged against its own long-run level and spread
//     (the anomaly-likelihood idea of Ahmad et al. 2017): the device alert
//     opens when it stands DeviceZ spreads above its usual level, and
//     resolves once it is back below deviceResolveZ for ResolveAfter
//     readings, with the device's metrics measured against the reference
//     frozen when the alert opened. After maxHold in one regime the device
//     alert resolves and the references restart from the series' levels:
//     the new regime is the device's normal.
//
// Devices with one metric have no device score: their series' alerts say
// everything; so do they when one metric holds most of the device's
// evidence (deviceMaxShare).
const (
	KindDevice = "device"
	// deviceMetric names a device alert in its alert id (the metric
	// field names the metric that contributed most).
	deviceMetric = "_device"
	// deviceShort: weight of a reading in a metric's short average of
	// evidence (about ten readings).
	deviceShort = 0.1
	// deviceClip bounds a reading's deviation, in spreads, in its
	// metric's evidence.
	deviceClip = 10
	// deviceWarmupMin: device scores learned before the device may alert,
	// at least (see deviceWarmup).
	deviceWarmupMin = 150
	// deviceResolveZ: the device score's distance from its usual level,
	// in spreads, below which an open device alert counts towards
	// resolving.
	deviceResolveZ = 0.5
	// deviceLearnClip bounds, in spreads, how far one device score moves
	// the long-run level and spread it is judged against, so the scores
	// leading up to a fault do not lift the bar the fault must clear.
	deviceLearnClip = 2
	// deviceMaxShare: a device alert needs the evidence of more than one
	// metric; when one metric holds more than this share of it, the
	// deviation is that metric's, and its series' own alert reports it.
	deviceMaxShare = 0.7
	// deviceSetPatience: consecutive readings with another set of
	// metrics after which that set is the device's (before: such readings
	// are not scored as a device).
	deviceSetPatience = 10
	// deviceFloor keeps the spread of the device score from vanishing on
	// devices whose sensors never move.
	deviceFloor = 1e-4
	// deviceContributors: metrics an alert names.
	deviceContributors = 3
)

// device is the multivariate state of one device.
type device struct {
	set          uint64  // the device's metric names (metricSet)
	n            int64   // device scores computed
	lmean, lvar  float64 // long-run level and spread of the device score
	last         float64 // the last device score's distance from its level, in spreads
	alert        alertState
	contributors []sensor.Contributor // of the open alert
	other        int32                // consecutive readings with another set of metrics
}

// newDevice returns an empty device record, or nil without one (for
// RestoreDevice, whose device parameter shadows the type).
func newDevice(has bool) *device {
	if !has {
		return nil
	}
	return &device{}
}

// refObserve folds the deseasoned value x into a series' reference
// baseline (unless frozen) and returns its deviation from the reference
// before the update, in the reference's spreads; ok is false while the
// reference is too young to judge.
func (s *Series) refObserve(cfg *Config, x float64, frozen bool) (z float64, ok bool) {
	if s.rn == 0 {
		s.rmean, s.rn = x, 1
		return 0, false
	}
	sd := max(math.Sqrt(s.rvar), 1e-9+1e-6*math.Abs(s.rmean))
	z = (x - s.rmean) / sd
	ok = s.rn > int64(cfg.Warmup)
	if frozen && ok {
		return z, true
	}
	s.rn++
	a := max(1/float64(s.rn), cfg.AlphaMin)
	d := x - s.rmean
	if ok {
		b := cfg.Z * sd
		d = min(max(d, -b), b)
	}
	dv := d
	if ok {
		b := varClip * sd
		dv = min(max(d, -b), b)
	}
	s.rmean += a * d
	s.rvar = (1 - a) * (s.rvar + a*dv*dv)
	return z, ok
}

// observeDevice scores the device of reading r from its series (in metric
// order, names alike) and appends the device alert's events to out.
func (d *Detector) observeDevice(r *sensor.Reading, names []string, series []*Series, out []sensor.Alert) []sensor.Alert {
	dv := d.devices[r.DeviceID]
	if dv == nil {
		dv = &device{}
		d.devices[r.DeviceID] = dv
	}
	k := len(series)
	for _, s := range series {
		s.inDevice = dv.alert.open // as of the previous reading, for the next
		s.together = false         // set below once the device is scored
	}
	if sig := metricSet(names); dv.set != sig {
		// Another set of metrics. A reading that lacks a metric now and
		// then is not scored as a device; a set that lasts is another
		// quantity, and the device's record starts over with it.
		if dv.set != 0 && dv.other < deviceSetPatience {
			dv.other++
			return out
		}
		if a := &dv.alert; a.open {
			a.open = false
			if !a.muted {
				d.open--
				ev := d.deviceEvent(dv, r, sensor.StateResolved)
				ev.Message = fmt.Sprintf("%s: its set of metrics changed; the device alert ends and its score starts over", r.DeviceID)
				out = append(out, ev)
			}
		}
		*dv = device{set: sig, contributors: dv.contributors[:0]}
	}
	dv.other = 0
	frozen := dv.alert.open
	warmup := d.cfg.deviceWarmup()
	sum, ready := 0.0, true
	for _, s := range series {
		z, ok := s.refObserve(s.cfg, s.last, frozen)
		if !ok {
			ready = false // a series still too young: no device score yet
			continue
		}
		s.rz = float32(z)
		q := min(z*z, deviceClip*deviceClip)
		s.ev += float32(deviceShort * (q - float64(s.ev)))
		sum += float64(s.ev)
	}
	if !ready {
		return out
	}
	score := math.Log1p(sum / float64(k))
	dz := (score - dv.lmean) / math.Sqrt(dv.lvar+deviceFloor)
	dv.last = dz
	// The metrics move together: the device's score stands half its bar
	// above usual, and no metric holds most of the evidence beyond the
	// usual (a metric's usual short average of z² is about 1): a load
	// that moves current, temperature and vibration at once. A burst of
	// one of them is then the device's movement, which this score judges.
	if dv.n > warmup && dz >= d.cfg.DeviceZ/2 {
		top, excess := 0.0, 0.0
		for _, s := range series {
			e := max(0, float64(s.ev)-1)
			top, excess = max(top, e), excess+e
		}
		together := excess > 0 && top <= deviceMaxShare*excess
		for _, s := range series {
			s.together = together
		}
	}
	if !frozen {
		dv.n++
		a := max(1/float64(dv.n), d.cfg.AlphaMin)
		dd := score - dv.lmean
		if dv.n > warmup {
			b := deviceLearnClip * math.Sqrt(dv.lvar+deviceFloor)
			dd = min(max(dd, -b), b)
		}
		dv.lmean += a * dd
		dv.lvar = (1 - a) * (dv.lvar + a*dd*dd)
	}
	a := &dv.alert
	if !a.open {
		if dv.n <= warmup || dz < d.cfg.DeviceZ {
			return out
		}
		dv.contributors = contributors(dv.contributors[:0], names, series)
		if len(dv.contributors) == 0 || dv.contributors[0].Share > deviceMaxShare {
			return out // one metric's deviation: its series' alert says it
		}
		top := series[slices.IndexFunc(names, func(n string) bool { return n == dv.contributors[0].Metric })]
		*a = alertState{open: true, startedAt: r.TS, id: sensor.AlertID(r.DeviceID, deviceMetric, r.TS),
			kind: KindDevice, severity: sensor.SeverityWarning, peak: dz}
		var muted bool
		if out, muted = d.spend(top, r, out); muted {
			a.muted = true
			return out
		}
		d.open++
		return append(out, d.deviceEvent(dv, r, sensor.StateOpen))
	}
	a.peak = max(a.peak, dz)
	if dz >= deviceResolveZ && r.TS.Sub(a.startedAt) < maxHold {
		a.below = 0
		return out
	}
	if a.below++; int(a.below) < d.cfg.ResolveAfter && r.TS.Sub(a.startedAt) < maxHold {
		return out
	}
	a.open, a.below = false, 0
	if r.TS.Sub(a.startedAt) >= maxHold {
		// The device has lived in this regime for maxHold: it is its
		// normal now. The references start again from the series' levels.
		for _, s := range series {
			s.rmean, s.rvar, s.ev = s.mean, s.varc, 0
		}
	}
	if a.muted {
		return out
	}
	d.open--
	return append(out, d.deviceEvent(dv, r, sensor.StateResolved))
}

// deviceWarmup is the number of device scores learned before the device
// may alert: the metrics' references' whole memory (1/AlphaMin readings),
// at least deviceWarmupMin. Over a shorter history a slowly wandering
// metric (a pump's temperature) has not yet shown how far it wanders,
// and its reference's spread is too narrow.
func (c *Config) deviceWarmup() int64 {
	return max(deviceWarmupMin, int64(math.Round(1/c.AlphaMin)))
}

// metricSet identifies a set of metric names (FNV-1a).
func metricSet(names []string) uint64 {
	h := uint64(14695981039346656037)
	for _, n := range names {
		for i := 0; i < len(n); i++ {
			h = (h ^ uint64(n[i])) * 1099511628211
		}
		h = (h ^ 0xff) * 1099511628211
	}
	return h
}

// contributors ranks the metrics by their share of the device's evidence.
func contributors(out []sensor.Contributor, names []string, series []*Series) []sensor.Contributor {
	total := 0.0
	for _, s := range series {
		total += float64(s.ev)
	}
	for i, s := range series {
		if total > 0 {
			out = append(out, sensor.Contributor{Metric: names[i], Share: round(float64(s.ev) / total), Z: math.Round(float64(s.rz)*100) / 100})
		}
	}
	slices.SortStableFunc(out, func(a, b sensor.Contributor) int {
		switch {
		case a.Share > b.Share:
			return -1
		case a.Share < b.Share:
			return 1
		}
		return 0
	})
	return out[:min(len(out), deviceContributors)]
}

func (d *Detector) deviceEvent(dv *device, r *sensor.Reading, state string) sensor.Alert {
	a := &dv.alert
	top := dv.contributors[0]
	ev := sensor.Alert{
		AlertID: a.id, DeviceID: r.DeviceID, Site: r.Site, Metric: top.Metric, Kind: KindDevice, Severity: a.severity,
		State: state, Score: round(deviceScore(dv.last, d.cfg)), Value: r.Metrics[top.Metric],
		TS: r.TS, StartedAt: a.startedAt, Contributors: slices.Clone(dv.contributors),
	}
	var b strings.Builder
	for i, c := range dv.contributors {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f%% (%+.1fσ)", c.Metric, 100*c.Share, c.Z)
	}
	if state == sensor.StateOpen {
		ev.Message = fmt.Sprintf("%s: its metrics together left their normal regime: %s", r.DeviceID, b.String())
		return ev
	}
	ts := r.TS
	ev.ResolvedAt = &ts
	ev.Message = fmt.Sprintf("%s: back to its normal regime after %s (it had left it with %s)", r.DeviceID, r.TS.Sub(a.startedAt).Round(time.Second), b.String())
	return ev
}

// deviceScore maps the device score's distance from its usual level to
// [0,1], OpenScore at DeviceZ.
func deviceScore(dz float64, cfg Config) float64 {
	if dz <= 0 || cfg.DeviceZ <= 0 {
		return 0
	}
	r := dz / cfg.DeviceZ
	return 1 - math.Pow(1-cfg.OpenScore, r*r)
}

// DeviceScore returns the device score in [0,1] after the device's last
// reading (OpenScore where a device alert opens) and whether its device
// alert is open; 0 and false for a device without one.
func (d *Detector) DeviceScore(device string) (float64, bool) {
	dv := d.devices[device]
	if dv == nil || dv.n <= d.cfg.deviceWarmup() {
		return 0, false
	}
	return deviceScore(dv.last, d.cfg), dv.alert.open && !dv.alert.muted
}
