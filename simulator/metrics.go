package simulator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	readings  *prometheus.CounterVec // result: published, acked, error
	anomalies *prometheus.CounterVec // kind
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_simulator_readings_total", Help: "Simulated readings, by result: published, then acked by the broker or failed (error).",
		}, []string{"result"}),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_simulator_anomalies_total", Help: "Anomalies injected, by kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.readings, m.anomalies)
	for _, r := range []string{"published", "acked", "error"} {
		m.readings.WithLabelValues(r)
	}
	for _, k := range anomalyKinds {
		m.anomalies.WithLabelValues(k)
	}
	return m
}

// progress logs rate and counts every ProgressEvery until the returned
// function is called.
func (s *Simulator) progress(ctx context.Context) func() {
	if s.cfg.ProgressEvery <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.ProgressEvery)
		defer t.Stop()
		last, lastAt := int64(0), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				st := s.Stats()
				rate := float64(st.Acked-last) / now.Sub(lastAt).Seconds()
				last, lastAt = st.Acked, now
				s.log.Info("simulator progress", "rate_per_s", int64(rate), "published", st.Published, "acked", st.Acked,
					"errors", st.Errors, "anomalies", st.Anomalies, "virtual_time", st.VirtualNow)
			}
		}
	}()
	return func() { cancel(); <-done }
}
