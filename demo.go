package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/sensorflow/sensorflow/dashboard"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
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
		broker, err := mqttx.ServeEmbedded(c.MQTTListen, log)
		if err != nil {
			return fmt.Errorf("%w (pass -demo.mqtt-listen or -mqtt.url)", err)
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
		cluster, err := kafkax.ServeEmbedded(c.KafkaPort)
		if err != nil {
			return fmt.Errorf("%w (pass -demo.kafka-port or -kafka.brokers)", err)
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
