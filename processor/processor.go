// Package processor consumes normalized readings from Kafka, detects
// anomalies per device and metric, publishes alert events to the alerts
// topic, and stores readings and alerts in every enabled sink (InfluxDB,
// Cassandra). Kafka offsets are committed only after every sink stored the
// batch and the alerts were written; a failing sink is retried with backoff,
// never skipped, so a crash or outage loses nothing (at-least-once delivery
// into idempotent sinks).
package processor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/retry"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// Config configures a processor. Kafka is shared with the other services and
// registered by the caller; RegisterFlags registers the rest.
type Config struct {
	Kafka        kafkax.Config
	GroupID      string
	BatchSize    int
	Linger       time.Duration
	DrainTimeout time.Duration
	Influx       sink.InfluxConfig
	Cassandra    sink.CassandraConfig
	Detect       detect.Config
}

// RegisterFlags registers the processor.*, influx.*, cassandra.* and
// detect.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GroupID, "processor.group", "sensorflow-processor", "Kafka consumer group of the processors; processors in one group split the partitions.")
	fs.IntVar(&c.BatchSize, "processor.batch-size", 2000, "Most readings per batch (one sink write and one offset commit per batch).")
	fs.DurationVar(&c.Linger, "processor.linger", 100*time.Millisecond, "Longest wait to fill a batch.")
	fs.DurationVar(&c.DrainTimeout, "processor.drain-timeout", 20*time.Second, "On shutdown, how long to keep trying to store and commit the batch in hand.")
	c.Influx.RegisterFlags(fs)
	c.Cassandra.RegisterFlags(fs)
	c.Detect.RegisterFlags(fs)
}

// Validate checks the configuration without connecting.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.GroupID == "" {
		return errors.New("processor.group is empty")
	}
	if c.BatchSize < 1 || c.Linger <= 0 {
		return errors.New("processor.batch-size and processor.linger must be positive")
	}
	if c.Influx.Enabled {
		if err := c.Influx.Validate(); err != nil {
			return err
		}
	}
	if c.Cassandra.Enabled {
		if err := c.Cassandra.Validate(); err != nil {
			return err
		}
	}
	return c.Detect.Validate()
}

// Processor is one member of the processor consumer group. Create it with
// New, start it with Run; Ready is safe to call concurrently.
type Processor struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	sinks []namedSink
	ready atomic.Bool
	// extra sinks given by the caller (e.g. the embedded demo store).
	extra []namedSink
}

type namedSink struct {
	name string
	sink sink.Sink
}

// New validates cfg and registers the processor's metrics with reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("processor config: %w", err)
	}
	var err error
	if cfg.Detect, err = cfg.Detect.WithRules(); err != nil {
		return nil, fmt.Errorf("processor config: %w", err)
	}
	return &Processor{cfg: cfg, log: log, m: newMetrics(reg)}, nil
}

// AddSink adds a sink beside the configured ones; call before Run.
func (p *Processor) AddSink(name string, s sink.Sink) {
	p.extra = append(p.extra, namedSink{name, s})
}

// Ready reports whether the processor is consuming.
func (p *Processor) Ready() error {
	if !p.ready.Load() {
		return errors.New("not consuming yet")
	}
	return nil
}

// Run connects to Kafka and the sinks, then consumes until ctx ends. On
// shutdown the batch in hand is stored and committed (within DrainTimeout)
// before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	if err := retry.Forever(ctx, p.log, "creating kafka topics", func() error {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return p.cfg.Kafka.EnsureTopics(cctx)
	}); err != nil {
		return nil // ctx ended
	}
	if err := p.openSinks(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		for _, s := range p.sinks {
			if err := s.sink.Close(); err != nil {
				p.log.Warn("closing sink", "sink", s.name, "err", err)
			}
		}
	}()
	if len(p.sinks) == 0 {
		p.log.Warn("no sink enabled: readings are consumed, alerts published, nothing is stored")
	}
	return p.consume(ctx)
}

// openSinks opens every enabled sink, retrying while a server is down.
func (p *Processor) openSinks(ctx context.Context) error {
	if p.cfg.Influx.Enabled {
		s, err := sink.NewInflux(p.cfg.Influx)
		if err != nil {
			return err
		}
		p.sinks = append(p.sinks, namedSink{"influx", s})
	}
	if p.cfg.Cassandra.Enabled {
		var s *sink.Cassandra
		err := retry.Forever(ctx, p.log, "connecting to cassandra", func() error {
			var err error
			s, err = sink.NewCassandra(ctx, p.cfg.Cassandra)
			return err
		})
		if err != nil {
			return err
		}
		p.sinks = append(p.sinks, namedSink{"cassandra", s})
	}
	p.sinks = append(p.sinks, p.extra...)
	for _, s := range p.sinks {
		p.m.sinkWrites.WithLabelValues(s.name, "ok")
		p.m.sinkWrites.WithLabelValues(s.name, "error")
	}
	return nil
}
