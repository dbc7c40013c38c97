// Package simulator plays a fleet of devices that publish readings over MQTT
// (QoS 1): environment sensors, machines and batteries with daily cycles,
// noise, slow drift and correlated metrics, at per-device rates with jitter.
// It injects anomalies (spike, level shift, drift, stuck value, noise burst,
// dropout) at a configurable rate and writes the ground truth of each as a
// JSON line, so detection can be scored. Runs are deterministic for a seed.
//
// Time is virtual: readings carry timestamps from -simulator.start on, and
// -simulator.speed says how many virtual seconds pass per real second
// (1: real time; 0: as fast as the broker accepts).
package simulator

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Config configures a simulator. MQTT and TopicPrefix are shared with the
// other services and registered by the caller.
type Config struct {
	MQTT        mqttx.Config
	TopicPrefix string

	Devices        int
	Sites          int
	DevicePrefix   string
	SitePrefix     string
	Interval       time.Duration
	Jitter         float64
	Seed           uint64
	Speed          float64
	Start          string
	Backfill       time.Duration
	Duration       time.Duration
	Count          int64
	AnomalyRate    float64
	AnomalyWarmup  int
	GroundTruth    string
	AckLog         string
	Connections    int
	MaxInflight    int
	ClientPrefix   string
	ProgressEvery  time.Duration
	ConnectTimeout time.Duration
}

// RegisterFlags registers the simulator.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Devices, "simulator.devices", 100, "Devices in the fleet.")
	fs.IntVar(&c.Sites, "simulator.sites", 4, "Sites the devices are spread over.")
	fs.StringVar(&c.DevicePrefix, "simulator.device-prefix", "dev-", "Device ids are this prefix and a 5-digit number.")
	fs.StringVar(&c.SitePrefix, "simulator.site-prefix", "site-", "Sites are this prefix and a number.")
	fs.DurationVar(&c.Interval, "simulator.interval", time.Second, "Mean time between two readings of one device (virtual time).")
	fs.Float64Var(&c.Jitter, "simulator.jitter", 0.1, "Random variation of each interval, as a fraction of it.")
	fs.Uint64Var(&c.Seed, "simulator.seed", 1, "Seed: the same seed and flags give the same readings and anomalies.")
	fs.Float64Var(&c.Speed, "simulator.speed", 1, "Virtual seconds per real second (1: real time; 0: as fast as the broker accepts).")
	fs.StringVar(&c.Start, "simulator.start", "", "Virtual time of the first readings, RFC 3339 (empty: now, or now minus -simulator.backfill).")
	fs.DurationVar(&c.Backfill, "simulator.backfill", 0, "Start this far in the past and publish that history at once before pacing (e.g. 5m: dashboards and detectors have history at start).")
	fs.DurationVar(&c.Duration, "simulator.duration", 0, "Stop after this much real time (0: run until stopped).")
	fs.Int64Var(&c.Count, "simulator.count", 0, "Stop after publishing this many readings (0: no limit).")
	fs.Float64Var(&c.AnomalyRate, "simulator.anomaly-rate", 0.002, "Probability, per reading of a device without an anomaly, that one starts.")
	fs.IntVar(&c.AnomalyWarmup, "simulator.anomaly-warmup", 100, "Readings of a device before anomalies may start (detectors warm up).")
	fs.StringVar(&c.GroundTruth, "simulator.ground-truth", "", "File to write injected anomalies to, as JSON lines (empty: none).")
	fs.StringVar(&c.AckLog, "simulator.ack-log", "", "File to write every acknowledged reading to, as 'device_id seq ts' lines (empty: none).")
	fs.IntVar(&c.Connections, "simulator.connections", 0, "MQTT connections (0: one per device up to 1,000 devices, else 64 pooled).")
	fs.IntVar(&c.MaxInflight, "simulator.max-inflight", 1000, "Unacknowledged publishes per connection.")
	fs.StringVar(&c.ClientPrefix, "simulator.client-prefix", "sim", "Prefix of the simulator's MQTT client ids.")
	fs.DurationVar(&c.ProgressEvery, "simulator.progress", 5*time.Second, "Interval of progress lines (0: none).")
	fs.DurationVar(&c.ConnectTimeout, "simulator.connect-timeout", time.Minute, "How long to wait for every connection at start-up.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Devices < 1:
		return errors.New("simulator.devices must be at least 1")
	case c.Sites < 1:
		return errors.New("simulator.sites must be at least 1")
	case c.Interval <= 0:
		return errors.New("simulator.interval must be positive")
	case c.Jitter < 0 || c.Jitter >= 1:
		return errors.New("simulator.jitter must be in [0,1)")
	case c.Speed < 0:
		return errors.New("simulator.speed must not be negative")
	case c.Backfill < 0:
		return errors.New("simulator.backfill must not be negative")
	case c.AnomalyRate < 0 || c.AnomalyRate > 1:
		return errors.New("simulator.anomaly-rate must be in [0,1]")
	case c.Connections < 0 || c.MaxInflight < 1:
		return errors.New("simulator.connections must not be negative and simulator.max-inflight must be positive")
	}
	if err := sensor.ValidateID("simulator.device-prefix", c.DevicePrefix+"00000"); err != nil {
		return err
	}
	if err := sensor.ValidateID("simulator.site-prefix", c.SitePrefix+"0"); err != nil {
		return err
	}
	if c.Start != "" {
		if _, err := time.Parse(time.RFC3339Nano, c.Start); err != nil {
			return fmt.Errorf("simulator.start: %w", err)
		}
	}
	return c.MQTT.Validate()
}

// Stats are the simulator's counts so far.
type Stats struct {
	Published    int64 // publishes handed to the MQTT client
	Acked        int64 // publishes the broker acknowledged
	Errors       int64 // publishes that failed
	Anomalies    int64 // anomalies injected (started)
	Dropped      int64 // readings not sent because of a dropout anomaly
	Devices      int
	Connections  int
	VirtualStart time.Time
	VirtualNow   time.Time
}

// GroundTruth is one injected anomaly: the readings of Metric ("*" for a
// dropout, which silences every metric) on the device from Start to End
// (inclusive, virtual time) were altered as Kind says. Cut is set when the
// run ended before the anomaly did (it lasted fewer readings than its kind
// does).
type GroundTruth struct {
	DeviceID string    `json:"device_id"`
	Site     string    `json:"site"`
	Metric   string    `json:"metric"`
	Kind     string    `json:"kind"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Cut      bool      `json:"cut,omitempty"`
}

// Simulator is a running fleet. Create it with New, start it with Run;
// Stats and Truth are safe to call concurrently.
type Simulator struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	topics sensor.Topics

	published, acked, errs, anomalies, dropped atomic.Int64
	virtualNow                                 atomic.Int64

	mu     sync.Mutex
	truth  []GroundTruth
	ackLog *bufio.Writer
	start  time.Time
}

// New validates cfg and registers the simulator's metrics with reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Simulator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simulator config: %w", err)
	}
	return &Simulator{cfg: cfg, log: log, m: newMetrics(reg), topics: sensor.Topics{Prefix: cfg.TopicPrefix}}, nil
}

// Stats returns the counts so far.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	start := s.start
	s.mu.Unlock()
	conns := s.cfg.Connections
	if conns == 0 {
		conns = s.autoConnections()
	}
	return Stats{
		Published: s.published.Load(), Acked: s.acked.Load(), Errors: s.errs.Load(),
		Anomalies: s.anomalies.Load(), Dropped: s.dropped.Load(), Devices: s.cfg.Devices, Connections: conns,
		VirtualStart: start, VirtualNow: time.Unix(0, s.virtualNow.Load()).UTC(),
	}
}

// Truth returns the anomalies injected and finished so far.
func (s *Simulator) Truth() []GroundTruth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]GroundTruth(nil), s.truth...)
}

func (s *Simulator) autoConnections() int {
	if s.cfg.Devices <= 1000 {
		return s.cfg.Devices
	}
	return 64
}

// Run connects the fleet and publishes until ctx ends or -duration or
// -count is reached, then waits (up to 10 s) for outstanding
// acknowledgements, writes the ground truth and logs a summary.
func (s *Simulator) Run(ctx context.Context) error {
	start := time.Now().Add(-s.cfg.Backfill).UTC().Truncate(time.Millisecond)
	if s.cfg.Start != "" {
		start, _ = time.Parse(time.RFC3339Nano, s.cfg.Start)
	}
	s.mu.Lock()
	s.start = start
	s.mu.Unlock()
	if s.cfg.AckLog != "" {
		f, err := os.Create(s.cfg.AckLog)
		if err != nil {
			return fmt.Errorf("creating ack log: %w", err)
		}
		defer f.Close()
		s.ackLog = bufio.NewWriterSize(f, 1<<16)
		defer func() {
			s.mu.Lock()
			s.ackLog.Flush()
			s.mu.Unlock()
		}()
	}
	fleet := s.newFleet(start)
	conns, err := s.connect(ctx, fleet)
	if err != nil {
		return err
	}
	if conns == nil { // ctx ended while connecting
		return nil
	}
	defer s.disconnect(conns, fleet)

	runCtx := ctx
	if s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, s.cfg.Duration)
		defer cancel()
	}
	stopProgress := s.progress(runCtx)
	err = s.publishLoop(runCtx, fleet, conns)
	stopProgress()
	s.waitAcks(conns, 10*time.Second)
	if werr := s.writeTruth(fleet); werr != nil && err == nil {
		err = werr
	}
	st := s.Stats()
	s.log.Info("simulator finished", "published", st.Published, "acked", st.Acked, "errors", st.Errors,
		"anomalies", st.Anomalies, "dropped_by_dropout", st.Dropped, "virtual_start", st.VirtualStart, "virtual_end", st.VirtualNow)
	return err
}
