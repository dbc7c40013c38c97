package simulator

import (
	"math"
	"math/rand/v2"
	"time"
)

// A deviceType describes the metrics one kind of device reports and how
// they behave: a daily cycle, noise, and a slow random drift, with metrics of
// one device correlated through a shared daily phase and load.
type deviceType struct {
	name    string
	metrics []metricModel
}

type metricModel struct {
	name  string
	base  float64
	daily float64 // amplitude of the daily cycle
	load  float64 // gain on the device's load (machines)
	noise float64 // standard deviation of the noise
	walk  float64 // standard deviation of the random walk per reading
	min   float64 // physical floor
	max   float64 // physical ceiling
}

var deviceTypes = []deviceType{
	{name: "environment", metrics: []metricModel{
		{name: "temperature", base: 21, daily: 3, noise: 0.15, walk: 0.002, min: -40, max: 85},
		{name: "humidity", base: 45, daily: -6, noise: 0.6, walk: 0.005, min: 0, max: 100},
		{name: "pressure", base: 1013, daily: 0.8, noise: 0.2, walk: 0.01, min: 870, max: 1085},
	}},
	{name: "machine", metrics: []metricModel{
		{name: "vibration", base: 2, load: 1.5, noise: 0.08, walk: 0.0005, min: 0, max: 100},
		{name: "temperature", base: 55, daily: 1, load: 12, noise: 0.3, walk: 0.002, min: -40, max: 150},
		{name: "current", base: 8, load: 6, noise: 0.1, walk: 0.001, min: 0, max: 100},
	}},
	{name: "battery", metrics: []metricModel{
		{name: "voltage", base: 3.9, noise: 0.004, walk: 0.0002, min: 2.5, max: 4.3},
		{name: "temperature", base: 24, daily: 2, noise: 0.1, walk: 0.002, min: -40, max: 85},
	}},
}

// Anomaly kinds the simulator injects.
const (
	AnomalySpike      = "spike"
	AnomalyLevelShift = "level_shift"
	AnomalyDrift      = "drift"
	AnomalyStuck      = "stuck"
	AnomalyNoiseBurst = "noise_burst"
	AnomalyDropout    = "dropout"
)

var anomalyKinds = []string{AnomalySpike, AnomalyLevelShift, AnomalyDrift, AnomalyStuck, AnomalyNoiseBurst, AnomalyDropout}

// anomalyLength is the number of readings each kind lasts.
var anomalyLength = map[string]int{
	AnomalySpike: 1, AnomalyLevelShift: 60, AnomalyDrift: 120, AnomalyStuck: 60, AnomalyNoiseBurst: 40, AnomalyDropout: 30,
}

// anomaly is an injected anomaly in progress on one metric.
type anomaly struct {
	kind      string
	metric    int
	left      int     // readings to go
	total     int     // readings in all
	magnitude float64 // in noise standard deviations, signed
	stuckAt   float64
	start     time.Time
	// last is the time of the last reading the anomaly affected.
	last time.Time
}

// device is one simulated device. Only the scheduler goroutine touches it.
type device struct {
	id, site string
	typ      *deviceType
	interval time.Duration
	next     time.Time // time of the next reading
	seq      int64
	rng      *rand.Rand
	phase    float64   // offset of the daily cycle, radians
	walk     []float64 // random-walk state per metric
	load     float64   // machine load in [0,1], slowly varying
	active   *anomaly
	conn     int // index of the connection it publishes through
}

// sample returns the device's metric values at t, applying an active
// anomaly; ok is false during a dropout (no reading is sent).
func (d *device) sample(t time.Time) ([]float64, bool) {
	day := float64(t.Unix()%86400)/86400*2*math.Pi + d.phase
	d.load = math.Min(1, math.Max(0, d.load+d.rng.NormFloat64()*0.01+(0.5-d.load)*0.01))
	values := make([]float64, len(d.typ.metrics))
	for i, m := range d.typ.metrics {
		d.walk[i] += d.rng.NormFloat64() * m.walk
		d.walk[i] -= d.walk[i] * 0.001 // mean-reverting
		v := m.base + m.daily*math.Sin(day) + m.load*d.load + d.walk[i] + d.rng.NormFloat64()*m.noise
		values[i] = v
	}
	if a := d.active; a != nil {
		m := d.typ.metrics[a.metric]
		done := a.total - a.left // readings of the anomaly already sent
		switch a.kind {
		case AnomalySpike, AnomalyLevelShift:
			values[a.metric] += a.magnitude * m.noise
		case AnomalyDrift:
			values[a.metric] += a.magnitude * m.noise * float64(done+1) / float64(a.total)
		case AnomalyStuck:
			if done == 0 {
				a.stuckAt = values[a.metric]
			}
			values[a.metric] = a.stuckAt
		case AnomalyNoiseBurst:
			values[a.metric] += d.rng.NormFloat64() * m.noise * math.Abs(a.magnitude)
		}
		a.last = t
		a.left--
		if a.kind == AnomalyDropout {
			return nil, false
		}
	}
	for i, m := range d.typ.metrics {
		if d.active == nil || d.active.kind != AnomalyStuck || d.active.metric != i {
			values[i] = math.Min(m.max, math.Max(m.min, values[i]))
		}
		values[i] = math.Round(values[i]*1e4) / 1e4
	}
	return values, true
}
