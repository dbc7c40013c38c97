package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sensorflow/sensorflow/internal/retry"
)

// Spec names a sink and says how to open it. Open runs when the processor
// starts, not when it is configured, so it may connect; it returns once the
// sink is usable or ctx ended (a sink whose server may still be starting
// retries inside Open).
type Spec struct {
	Name string
	Open func(ctx context.Context) (Sink, error)
}

// Fixed returns the Spec of a sink that is already open (the demo's store,
// the dashboard hub, a test's fake).
func Fixed(name string, s Sink) Spec {
	return Spec{Name: name, Open: func(context.Context) (Sink, error) { return s, nil }}
}

// Fanout is the one Sink the processor writes to: it writes each batch to
// every sink concurrently and retries each sink on its own, with backoff,
// until it succeeds, so a healthy sink is not rewritten for a failing one and
// no sink is ever skipped. Write returns only when every sink stored the
// batch, or with ctx's error. Fanout owns the sinks it opened and closes them.
type Fanout struct {
	log     *slog.Logger
	retry   retry.Policy
	sinks   []namedSink
	writes  *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

type namedSink struct {
	name string
	sink Sink
}

// NewFanout returns an empty fanout whose metrics (sink_writes_total by sink
// and result, sink_write_seconds by sink) are registered with reg; wrap reg
// with the component's prefix.
func NewFanout(log *slog.Logger, reg prometheus.Registerer) *Fanout {
	f := &Fanout{
		log:   log,
		retry: retry.Default,
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sink_writes_total", Help: "Batch writes to each sink, by result.",
		}, []string{"sink", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sink_write_seconds", Help: "Latency of successful batch writes, by sink.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"sink"}),
	}
	reg.MustRegister(f.writes, f.seconds)
	return f
}

// Open opens every spec in order and adds it to the fanout. On an error the
// sinks opened so far stay in the fanout for Close.
func (f *Fanout) Open(ctx context.Context, specs ...Spec) error {
	for _, sp := range specs {
		s, err := sp.Open(ctx)
		if err != nil {
			return fmt.Errorf("opening sink %s: %w", sp.Name, err)
		}
		f.sinks = append(f.sinks, namedSink{sp.Name, s})
		f.writes.WithLabelValues(sp.Name, "ok")
		f.writes.WithLabelValues(sp.Name, "error")
	}
	return nil
}

// Len is the number of open sinks.
func (f *Fanout) Len() int { return len(f.sinks) }

// Write stores b in every sink; see Fanout.
func (f *Fanout) Write(ctx context.Context, b Batch) error {
	if b.Len() == 0 {
		return nil
	}
	var g errgroup.Group
	for _, s := range f.sinks {
		g.Go(func() error {
			return f.retry.Forever(ctx, f.log, "writing batch to "+s.name, func() error {
				start := time.Now()
				if err := s.sink.Write(ctx, b); err != nil {
					return err
				}
				f.seconds.WithLabelValues(s.name).Observe(time.Since(start).Seconds())
				f.writes.WithLabelValues(s.name, "ok").Inc()
				return nil
			}, func(error) { f.writes.WithLabelValues(s.name, "error").Inc() })
		})
	}
	return g.Wait()
}

// Close closes every sink and returns their errors joined.
func (f *Fanout) Close() error {
	var errs []error
	for _, s := range f.sinks {
		if err := s.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing sink %s: %w", s.name, err))
		}
	}
	f.sinks = nil
	return errors.Join(errs...)
}
