// Package processor consumes normalized readings from Kafka, detects
// anomalies per device and metric, publishes alert events to the alerts
// topic, and stores readings and alerts in the sinks it is given. It knows
// sinks only as sink.Sink, through sink.Spec and sink.Fanout: which sinks
// exist and how they are configured is the caller's wiring. Kafka offsets are committed only after every sink stored the
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
	"golang.org/x/sync/errgroup"

	"github.com/sensorflow/sensorflow/internal/batch"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/incident"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// Config configures a processor. Kafka is shared with the other services and
// registered by the caller; RegisterFlags registers the rest.
type Config struct {
	Kafka     kafkax.Config
	GroupID   string
	BatchSize int
	Linger    time.Duration
	// StoreLinger: how long the storer waits for more scored batches
	// before a sink write (0: it writes what waits at once).
	StoreLinger  time.Duration
	DrainTimeout time.Duration
	// CheckpointInterval: how often the detector state is written to
	// Kafka.State() (checkpoint.go); 0 turns checkpoints off.
	CheckpointInterval time.Duration
	Detect             detect.Config
	// Incidents: the incidents stage (see incidents.go) runs in every
	// processor unless IncidentsOff.
	Incidents      incident.Config
	IncidentsOff   bool
	IncidentsGroup string
	CensusInterval time.Duration
	// Sinks are opened in Run, in order, and written through one
	// sink.Fanout. Set by the caller; no flag.
	Sinks []sink.Spec
}

// RegisterFlags registers the processor.* and detect.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GroupID, "processor.group", "sensorflow-processor", "Kafka consumer group of the processors; processors in one group split the partitions.")
	fs.IntVar(&c.BatchSize, "processor.batch-size", 2000, "Most readings per batch scored at once; batches that waited for the sinks are stored together, up to 4 times this in one write.")
	fs.DurationVar(&c.Linger, "processor.linger", 0, "Longest wait to fill a batch after its first reading (0: adaptive, score what is in hand as soon as no reading waits; batches grow while detection is busy, or once 16 batches wait for the sinks).")
	fs.DurationVar(&c.StoreLinger, "processor.store-linger", 0, "Longest wait for more scored batches before a write to the sinks (0: adaptive, store what waits at once; writes grow while a sink is busy). Alerts never wait for it; readings reach the sinks up to this much later, in fewer, larger writes, which costs InfluxDB far less CPU.")
	fs.DurationVar(&c.DrainTimeout, "processor.drain-timeout", 20*time.Second, "On shutdown, how long to keep trying to store and commit the batch in hand.")
	fs.DurationVar(&c.CheckpointInterval, "processor.checkpoint-interval", 5*time.Second, "How often the detector state of the devices scored meanwhile is written to the state topic (-kafka.state-topic); offsets are committed at each checkpoint, so a crash re-reads at most this much (0: no checkpoints, offsets committed every batch, and series start over after a restart or rebalance).")
	fs.BoolVar(&c.IncidentsOff, "incidents.off", false, "Publish every device alert straight to the alerts topic, without grouping alerts into site incidents (outage, site_wide).")
	fs.StringVar(&c.IncidentsGroup, "incidents.group", "", "Kafka consumer group of the incidents stage, which every processor runs (empty: -processor.group and -incidents).")
	fs.DurationVar(&c.CensusInterval, "incidents.census-interval", 10*time.Second, "How often each processor reports the devices of each site it sees to the incidents stage.")
	c.Incidents.RegisterFlags(fs)
	c.Detect.RegisterFlags(fs)
}

func (c *Config) incidentsGroup() string {
	if c.IncidentsGroup != "" {
		return c.IncidentsGroup
	}
	return c.GroupID + "-incidents"
}

// Validate checks the configuration without connecting.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.GroupID == "" {
		return errors.New("processor.group is empty")
	}
	if err := c.batchPolicy().Validate("processor"); err != nil {
		return err
	}
	if c.StoreLinger < 0 {
		return errors.New("processor.store-linger must not be negative")
	}
	for _, s := range c.Sinks {
		if s.Name == "" || s.Open == nil {
			return errors.New("processor: a sink without a name or an Open")
		}
	}
	if c.CheckpointInterval < 0 {
		return errors.New("processor.checkpoint-interval must not be negative")
	}
	if !c.IncidentsOff {
		if err := c.Incidents.Validate(); err != nil {
			return err
		}
		if c.CensusInterval <= 0 {
			return errors.New("incidents.census-interval must be positive")
		}
	}
	return c.Detect.Validate()
}

// checkpointing reports whether detector checkpoints are on.
func (c *Config) checkpointing() bool {
	return c.CheckpointInterval > 0
}

func (c *Config) batchPolicy() batch.Policy {
	return batch.Policy{Max: c.BatchSize, Linger: c.Linger}
}

// Processor is one member of the processor consumer group. Create it with
// New, start it with Run; Ready is safe to call concurrently.
type Processor struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	sinks *sink.Fanout
	ready atomic.Bool
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
	return &Processor{
		cfg:   cfg,
		log:   log,
		m:     newMetrics(reg),
		sinks: sink.NewFanout(log, prometheus.WrapRegistererWithPrefix("sensorflow_processor_", reg)),
	}, nil
}

// Ready reports whether the processor is consuming.
func (p *Processor) Ready() error {
	if !p.ready.Load() {
		return errors.New("not consuming yet")
	}
	return nil
}

// Run connects to Kafka and the sinks, then consumes until ctx ends, and
// runs the incidents stage beside it (unless IncidentsOff). On
// shutdown the batch in hand is stored and committed (within DrainTimeout)
// before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	if err := p.cfg.Kafka.AwaitTopics(ctx, p.log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err // refused credentials or an untrusted certificate
	}
	defer func() {
		if err := p.sinks.Close(); err != nil {
			p.log.Warn("closing sinks", "err", err)
		}
	}()
	if err := p.sinks.Open(ctx, p.cfg.Sinks...); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if p.sinks.Len() == 0 {
		p.log.Warn("no sink enabled: readings are consumed, alerts published, nothing is stored")
	}
	if p.cfg.IncidentsOff {
		return p.consume(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.consume(gctx) })
	g.Go(func() error { return p.groupIncidents(gctx) })
	return g.Wait()
}
