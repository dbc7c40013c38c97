// Package bridge moves readings from MQTT into Kafka and alerts from Kafka
// back to MQTT.
//
// Readings: the bridge subscribes to {prefix}/+/+/telemetry with QoS 1
// through a shared subscription (so several bridges split the load) and a
// persistent session. Each payload is validated and normalized; valid
// readings go to the readings topic keyed by device id, invalid payloads to
// the dead-letter topic with their reason. Only when Kafka acknowledged the
// whole batch (acks=all) does the bridge send the MQTT acknowledgements, in
// arrival order. A Kafka outage therefore stops acknowledgements and leaves
// the backlog with the broker.
//
// Alerts: a Kafka consumer group on the alerts topic republishes every alert
// to {prefix}/{site}/{device_id}/alerts with QoS 1 and commits only after the
// broker acknowledged it.
package bridge

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sensorflow/sensorflow/internal/batch"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Config configures a bridge. MQTT, Kafka and TopicPrefix are shared with the
// other services and registered by the caller; RegisterFlags registers the
// bridge.* flags.
type Config struct {
	MQTT        mqttx.Config
	Kafka       kafkax.Config
	TopicPrefix string

	ClientID      string
	ShareGroup    string
	QueueSize     int
	BatchSize     int
	Linger        time.Duration
	MaxAge        time.Duration
	MaxFuture     time.Duration
	ForwardAlerts bool
	AlertsGroup   string
	DrainTimeout  time.Duration
	GOGC          int
}

// RegisterFlags registers the bridge.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&c.ClientID, "bridge.client-id", "sensorflow-bridge-"+host, "MQTT client id of the bridge; keep it stable so its persistent session survives restarts.")
	fs.StringVar(&c.ShareGroup, "bridge.share-group", "", "MQTT shared-subscription group for several bridges to split telemetry in (empty: one bridge, plain subscription; see the bridge README before sharing).")
	fs.IntVar(&c.QueueSize, "bridge.queue-size", 20000, "Messages buffered between the MQTT client and the Kafka writer; keep it above the broker's max_inflight_messages.")
	fs.IntVar(&c.BatchSize, "bridge.batch-size", 1000, "Most messages per Kafka write.")
	fs.DurationVar(&c.Linger, "bridge.linger", 5*time.Millisecond, "Longest wait to fill a Kafka batch after its first message (0: adaptive, send what is in hand as soon as no message waits; batches grow while Kafka is busy).")
	fs.DurationVar(&c.MaxAge, "bridge.max-age", 30*24*time.Hour, "Reject readings whose ts is older than this (0: no bound).")
	fs.DurationVar(&c.MaxFuture, "bridge.max-future", time.Hour, "Reject readings whose ts is this far ahead of the bridge's clock (0: no bound).")
	fs.BoolVar(&c.ForwardAlerts, "bridge.forward-alerts", true, "Mirror alerts from Kafka to MQTT.")
	fs.StringVar(&c.AlertsGroup, "bridge.alerts-group", "sensorflow-bridge-alerts", "Kafka consumer group of the alert mirror.")
	fs.DurationVar(&c.DrainTimeout, "bridge.drain-timeout", 10*time.Second, "On shutdown, how long to keep trying to write the batch in hand.")
	fs.IntVar(&c.GOGC, "bridge.gogc", 400, "Go's GC target (GOGC) when the process runs the bridge alone (-target bridge): its live heap is small, so a higher target trades a few tens of MiB for less CPU per message. GOGC in the environment takes precedence; 0: Go's default.")
}

// Validate checks the configuration without connecting.
func (c *Config) Validate() error {
	if err := c.MQTT.Validate(); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.TopicPrefix == "" {
		return errors.New("mqtt.topic-prefix is empty")
	}
	if c.ClientID == "" {
		return errors.New("bridge.client-id is empty")
	}
	if err := c.batchPolicy().Validate("bridge"); err != nil {
		return err
	}
	if c.QueueSize < c.BatchSize {
		return errors.New("bridge.queue-size must be at least bridge.batch-size")
	}
	if c.GOGC < 0 {
		return errors.New("bridge.gogc must not be negative")
	}
	return nil
}

func (c *Config) batchPolicy() batch.Policy {
	return batch.Policy{Max: c.BatchSize, Linger: c.Linger}
}

// Bridge forwards readings MQTT → Kafka and alerts Kafka → MQTT. Create it
// with New and start it with Run; Ready is safe to call concurrently.
type Bridge struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	topics  sensor.Topics
	decoder sensor.Decoder

	mqttUp  atomic.Bool
	kafkaUp atomic.Bool
}

// New validates cfg and registers the bridge's metrics with reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Bridge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bridge config: %w", err)
	}
	return &Bridge{
		cfg:     cfg,
		log:     log,
		m:       newMetrics(reg),
		topics:  sensor.Topics{Prefix: cfg.TopicPrefix},
		decoder: sensor.Decoder{MaxAge: cfg.MaxAge, MaxFuture: cfg.MaxFuture},
	}, nil
}

// Ready reports whether the bridge is connected to both MQTT and Kafka.
func (b *Bridge) Ready() error {
	switch {
	case !b.mqttUp.Load():
		return errors.New("mqtt not connected and subscribed")
	case !b.kafkaUp.Load():
		return errors.New("kafka not reachable")
	}
	return nil
}

// Run connects, forwards until ctx ends, then drains: the batch in hand is
// written and acknowledged, everything else stays unacknowledged with the
// broker, which redelivers it to the next bridge session.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.cfg.Kafka.AwaitTopics(ctx, b.log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	b.kafkaUp.Store(true)
	// A refused password or an untrusted certificate stops the bridge here,
	// with the broker's answer, before paho's clients retry in silence.
	if err := b.cfg.MQTT.Preflight(ctx, b.log, b.cfg.ClientID+"-preflight"); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.forward(gctx) })
	if b.cfg.ForwardAlerts {
		g.Go(func() error { return b.mirrorAlerts(gctx) })
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}
