package simulator

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// newFleet builds the devices, deterministically from the seed.
func (s *Simulator) newFleet(start time.Time) []*device {
	fleet := make([]*device, s.cfg.Devices)
	conns := s.cfg.Connections
	if conns == 0 {
		conns = s.autoConnections()
	}
	for i := range fleet {
		rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(i)))
		typ := &deviceTypes[i%len(deviceTypes)]
		interval := time.Duration(float64(s.cfg.Interval) * (1 + s.cfg.Jitter*(rng.Float64()-0.5)))
		d := &device{
			id:       fmt.Sprintf("%s%05d", s.cfg.DevicePrefix, i),
			site:     fmt.Sprintf("%s%d", s.cfg.SitePrefix, i%s.cfg.Sites),
			typ:      typ,
			interval: interval,
			// Spread the first readings over one interval.
			next:  start.Add(time.Duration(rng.Float64() * float64(interval))),
			rng:   rng,
			phase: rng.Float64() * 0.5,
			walk:  make([]float64, len(typ.metrics)),
			load:  rng.Float64(),
			conn:  i % conns,
		}
		fleet[i] = d
	}
	return fleet
}

// schedule orders devices by the time of their next reading.
type schedule []*device

func (q schedule) Len() int           { return len(q) }
func (q schedule) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q schedule) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *schedule) Push(x any)        { *q = append(*q, x.(*device)) }
func (q *schedule) Pop() any {
	old := *q
	d := old[len(old)-1]
	*q = old[:len(old)-1]
	return d
}

// publishLoop emits readings in virtual-time order, pacing them to
// -simulator.speed, until ctx ends or -simulator.count is reached.
func (s *Simulator) publishLoop(ctx context.Context, fleet []*device, conns []*conn) error {
	q := make(schedule, len(fleet))
	copy(q, fleet)
	heap.Init(&q)
	realStart := time.Now()
	virtStart := s.Stats().VirtualStart
	buf := make([]byte, 0, 256)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if s.cfg.Count > 0 && s.published.Load()+s.dropped.Load() >= s.cfg.Count {
			return nil
		}
		d := q[0]
		t := d.next
		if s.cfg.Speed > 0 {
			// The backfilled history is due at once; then real pacing.
			due := realStart.Add(time.Duration(float64(t.Sub(virtStart)-s.cfg.Backfill) / s.cfg.Speed))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return nil
				}
			}
		}
		s.virtualNow.Store(t.UnixNano())
		if r, ok := s.sample(d, t); ok {
			buf = r.AppendJSON(buf[:0])
			payload := append([]byte(nil), buf...)
			if err := conns[d.conn].publish(ctx, s.topics.Telemetry(d.site, d.id), payload, d.id, d.seq, t); err != nil {
				return nil // ctx ended
			}
			s.published.Add(1)
			s.m.readings.WithLabelValues("published").Inc()
		} else {
			s.dropped.Add(1)
		}
		s.advance(&q)
	}
}

// sample makes device d's reading at t, starting and finishing injected
// anomalies; ok is false during a dropout.
func (s *Simulator) sample(d *device, t time.Time) (sensor.Reading, bool) {
	s.maybeStartAnomaly(d, t)
	values, ok := d.sample(t)
	if d.active != nil && d.active.left == 0 {
		s.finishAnomaly(d)
	}
	if !ok {
		return sensor.Reading{}, false
	}
	d.seq++
	r := sensor.Reading{DeviceID: d.id, Site: d.site, TS: t, Seq: d.seq, Metrics: make(map[string]float64, len(values))}
	for i, m := range d.typ.metrics {
		r.Metrics[m.name] = values[i]
	}
	return r, true
}

// advance schedules the next reading of the device at the head of q.
func (s *Simulator) advance(q *schedule) {
	d := (*q)[0]
	jitter := 1 + s.cfg.Jitter*(d.rng.Float64()-0.5)
	d.next = d.next.Add(time.Duration(float64(d.interval) * jitter))
	heap.Fix(q, 0)
}

// Play runs the fleet offline, without a broker: emit gets every reading
// in virtual-time order (the same readings and anomalies Run publishes for
// the same configuration and start), until Count readings (dropouts
// included) or Duration of virtual time. It returns the ground truth.
// Quality evaluations use it to score a detector on many fleets quickly.
func Play(cfg Config, start time.Time, emit func(*sensor.Reading)) ([]GroundTruth, error) {
	if cfg.Count <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("simulator: Play needs a count or a duration")
	}
	s := &Simulator{cfg: cfg, m: newMetrics(prometheus.NewRegistry())}
	fleet := s.newFleet(start)
	q := make(schedule, len(fleet))
	copy(q, fleet)
	heap.Init(&q)
	end := start.Add(cfg.Duration)
	for n := int64(0); cfg.Count <= 0 || n < cfg.Count; n++ {
		d := q[0]
		if cfg.Duration > 0 && d.next.After(end) {
			break
		}
		if r, ok := s.sample(d, d.next); ok {
			emit(&r)
		}
		s.advance(&q)
	}
	for _, d := range fleet {
		if d.active != nil && d.active.left < d.active.total {
			s.finishAnomaly(d)
		}
	}
	return s.Truth(), nil
}

func (s *Simulator) maybeStartAnomaly(d *device, t time.Time) {
	if d.active != nil || d.seq < int64(s.cfg.AnomalyWarmup) || d.rng.Float64() >= s.cfg.AnomalyRate {
		return
	}
	kind := anomalyKinds[d.rng.IntN(len(anomalyKinds))]
	sign := 1.0
	if d.rng.IntN(2) == 0 {
		sign = -1
	}
	mag := map[string]float64{
		AnomalySpike: 12 + 6*d.rng.Float64(), AnomalyLevelShift: 10 + 4*d.rng.Float64(),
		AnomalyDrift: 14 + 6*d.rng.Float64(), AnomalyNoiseBurst: 8,
	}[kind]
	n := anomalyLength[kind]
	d.active = &anomaly{kind: kind, metric: d.rng.IntN(len(d.typ.metrics)), left: n, total: n, magnitude: sign * mag, start: t}
	s.anomalies.Add(1)
	s.m.anomalies.WithLabelValues(kind).Inc()
}

func (s *Simulator) finishAnomaly(d *device) {
	a := d.active
	d.active = nil
	metric := d.typ.metrics[a.metric].name
	if a.kind == AnomalyDropout {
		metric = "*"
	}
	s.mu.Lock()
	s.truth = append(s.truth, GroundTruth{DeviceID: d.id, Site: d.site, Metric: metric, Kind: a.kind, Start: a.start, End: a.last, Cut: a.left > 0})
	s.mu.Unlock()
}

// writeTruth closes anomalies still running and writes the ground truth file.
func (s *Simulator) writeTruth(fleet []*device) error {
	for _, d := range fleet {
		if d.active != nil && d.active.left < d.active.total {
			s.finishAnomaly(d)
		}
	}
	if s.cfg.GroundTruth == "" {
		return nil
	}
	f, err := os.Create(s.cfg.GroundTruth)
	if err != nil {
		return fmt.Errorf("writing ground truth: %w", err)
	}
	enc := json.NewEncoder(f)
	for _, g := range s.Truth() {
		if err := enc.Encode(g); err != nil {
			f.Close()
			return fmt.Errorf("writing ground truth: %w", err)
		}
	}
	return f.Close()
}
