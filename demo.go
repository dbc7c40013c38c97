package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sensorflow/sensorflow/dashboard"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// DemoConfig holds the flags of `sensorflow demo`: every flag of the
// services run (with demo defaults) and the embedded pieces.
type DemoConfig struct {
	Run        RunConfig
	MQTTListen string
	KafkaPort  int
	Data       string
	Retention  time.Duration
	fs         *flag.FlagSet
	// onBroker, when set, is given the embedded MQTT broker (tests).
	onBroker func(*mochi.Server)
}

const demoUsage = `Runs the whole pipeline in one process with nothing else installed: an
embedded MQTT broker and Kafka-protocol broker (the bridge and processor
talk to them over real sockets), the simulator, the bridge, the processor,
an embedded store that keeps history in -demo.data across restarts, and
the web dashboard.

Each embedded piece gives way to a real one: -mqtt.url, -kafka.brokers,
-influx.url and -cassandra.hosts (the last two add InfluxDB and Cassandra
as stores).`

// RegisterFlags registers the demo's flags and sets its defaults.
func (c *DemoConfig) RegisterFlags(fs *flag.FlagSet) {
	c.fs = fs
	c.Run.RegisterFlags(fs)
	fs.StringVar(&c.MQTTListen, "demo.mqtt-listen", "127.0.0.1:1883", "Address of the embedded MQTT broker.")
	fs.IntVar(&c.KafkaPort, "demo.kafka-port", 9092, "Port of the embedded Kafka-protocol broker on 127.0.0.1.")
	fs.StringVar(&c.Data, "demo.data", "sensorflow-data", "Folder of the embedded store.")
	fs.DurationVar(&c.Retention, "demo.retention", 6*time.Hour, "History the embedded store keeps.")
	for name, v := range map[string]string{
		"simulator.devices": "200", "simulator.backfill": "5m", "dashboard.addr": "127.0.0.1:8080",
		"admin.addr": "127.0.0.1:9100", "log.format": "text", "influx.enabled": "false", "cassandra.enabled": "false",
		"bridge.client-id": "sensorflow-demo-bridge",
	} {
		f := fs.Lookup(name)
		_ = f.Value.Set(v) // Value.Set, not fs.Set: the flag still counts as not given
		f.DefValue = v
	}
}

// given reports whether the user set a flag (on the command line or in the
// environment).
func (c *DemoConfig) given(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// Demo runs the demo until ctx ends. out receives the start-up banner.
func Demo(ctx context.Context, c DemoConfig, log *slog.Logger, out io.Writer) error {
	cfg := c.Run
	cfg.Targets = "all"
	if err := os.MkdirAll(c.Data, 0o755); err != nil {
		return fmt.Errorf("creating -demo.data: %w", err)
	}
	store, err := sink.OpenBolt(filepath.Join(c.Data, "store.db"), c.Retention)
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.Prune(time.Now()); err != nil {
		return err
	}
	hub := dashboard.NewHub(cfg.DashboardPoints, cfg.DashboardSeries)
	if err := store.Replay(time.Now().Add(-15*time.Minute), func(b sink.Batch) error { return hub.Write(ctx, b) }); err != nil {
		return fmt.Errorf("loading history: %w", err)
	}
	cfg.hub = hub
	cfg.extraSinks = []sink.Spec{sink.Fixed("store", store)}

	mqttWhere, kafkaWhere := "embedded", "embedded"
	if !c.given("mqtt.url") {
		broker, err := startMQTT(c.MQTTListen, log)
		if err != nil {
			return err
		}
		defer broker.Close()
		defer func() {
			if n := broker.Info.InflightDropped; n > 0 {
				log.Error("embedded mqtt broker dropped messages", "count", n)
			}
		}()
		if c.onBroker != nil {
			c.onBroker(broker)
		}
		cfg.MQTT.URL = "tcp://" + c.MQTTListen
	} else {
		mqttWhere = "external"
	}
	if !c.given("kafka.brokers") {
		cluster, err := startKafka(c.KafkaPort)
		if err != nil {
			return err
		}
		defer cluster.Close()
		cfg.Kafka.Brokers = cluster.ListenAddrs()[0]
	} else {
		kafkaWhere = "external"
	}
	cfg.Influx.Enabled = c.given("influx.url")
	cfg.Cassandra.Enabled = c.given("cassandra.hosts")

	go func() { // keep the store within its retention
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if _, err := store.Prune(now); err != nil {
					log.Warn("pruning the store", "err", err)
				}
			}
		}
	}()

	host, port, _ := net.SplitHostPort(c.MQTTListen)
	fmt.Fprintf(out, `
Sensorflow demo
  dashboard        http://%s
  MQTT broker      %s (%s)
  Kafka            %s (%s)
  store            %s (history kept %s)%s%s
  simulator        %d devices, anomalies injected, %s of history first
  metrics          http://%s/metrics

Watch alerts:
  mosquitto_sub -h %s -p %s -t '%s/+/+/alerts'
  go run . alerts -kafka.brokers %s

Ctrl-C stops everything cleanly.

`, localAddr(cfg.DashboardAddr), cfg.MQTT.URL, mqttWhere, cfg.Kafka.Brokers, kafkaWhere, filepath.Join(c.Data, "store.db"), c.Retention,
		optional(cfg.Influx.Enabled, "\n  InfluxDB         "+cfg.Influx.URL),
		optional(cfg.Cassandra.Enabled, "\n  Cassandra        "+cfg.Cassandra.Hosts),
		cfg.Simulator.Devices, cfg.Simulator.Backfill, localAddr(cfg.AdminAddr), host, port, cfg.TopicPrefix, cfg.Kafka.Brokers)
	return Run(ctx, cfg, log)
}

func optional(on bool, s string) string {
	if on {
		return s
	}
	return ""
}

// startMQTT runs the embedded MQTT broker (mochi-mqtt) on addr.
func startMQTT(addr string, log *slog.Logger) (*mochi.Server, error) {
	ln, err := net.Listen("tcp", addr) // fail early and clearly if the port is taken
	if err != nil {
		return nil, fmt.Errorf("embedded MQTT broker on %s: %w (pass -demo.mqtt-listen or -mqtt.url)", addr, err)
	}
	ln.Close()
	// mochi logs every connection at info level: keep only its errors.
	// mochi drops a QoS 1 message once a client holds MaximumInflight
	// unacknowledged ones; the bridge holds up to its queue plus a batch
	// until Kafka confirmed them, so allow far more than that.
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 1 << 16
	opts := &mochi.Options{Capabilities: caps, Logger: slog.New(levelFilter{log.Handler(), slog.LevelError}).With("component", "mqtt-broker")}
	s := mochi.New(opts)
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{Type: "tcp", ID: "demo", Address: addr})); err != nil {
		return nil, fmt.Errorf("embedded MQTT broker on %s: %w", addr, err)
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	return s, nil
}

// startKafka runs the embedded Kafka-protocol broker (kfake) on loopback.
func startKafka(port int) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort("127.0.0.1", p))
		}),
		kfake.DefaultNumPartitions(6),
	)
	if err != nil {
		return nil, fmt.Errorf("embedded Kafka broker on 127.0.0.1:%s: %w (pass -demo.kafka-port or -kafka.brokers)", strconv.Itoa(port), err)
	}
	if len(c.ListenAddrs()) == 0 {
		c.Close()
		return nil, errors.New("embedded Kafka broker has no listener")
	}
	return c, nil
}

// levelFilter passes only records at or above min.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (h levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h.Handler.WithAttrs(a), h.min}
}

func (h levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{h.Handler.WithGroup(g), h.min}
}
