// Package cli implements the sensorflow subcommands other than running the
// services: check, alerts, query and replay.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gocql/gocql"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// CheckConfig holds the flags of `sensorflow check`.
type CheckConfig struct {
	MQTT      mqttx.Config
	Kafka     kafkax.Config
	Influx    sink.InfluxConfig
	Cassandra sink.CassandraConfig
	Only      string
	Timeout   time.Duration
}

// RegisterFlags registers the check flags, including every server's.
func (c *CheckConfig) RegisterFlags(fs *flag.FlagSet) {
	c.MQTT.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	c.Influx.RegisterFlags(fs)
	c.Cassandra.RegisterFlags(fs)
	fs.StringVar(&c.Only, "only", "mqtt,kafka,cassandra,influx", "Comma-separated servers to check.")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "Timeout of each check.")
}

// Check connects to each server with the client Sensorflow uses and makes it
// answer its own protocol: an MQTT CONNACK, Kafka metadata, a CQL query on
// system.local, an InfluxDB write and read. It prints one line per server
// and fails if any check failed.
func Check(ctx context.Context, c CheckConfig, out io.Writer) error {
	checks := map[string]func(context.Context) (string, error){
		"mqtt":      func(ctx context.Context) (string, error) { return checkMQTT(ctx, c.MQTT, c.Timeout) },
		"kafka":     func(ctx context.Context) (string, error) { return checkKafka(ctx, c.Kafka) },
		"cassandra": func(ctx context.Context) (string, error) { return checkCassandra(c.Cassandra, c.Timeout) },
		"influx":    func(ctx context.Context) (string, error) { return checkInflux(ctx, c.Influx) },
	}
	var failed []string
	for _, name := range strings.Split(c.Only, ",") {
		name = strings.TrimSpace(name)
		fn, ok := checks[name]
		if !ok {
			return fmt.Errorf("-only: unknown server %q (want mqtt, kafka, cassandra, influx)", name)
		}
		cctx, cancel := context.WithTimeout(ctx, c.Timeout)
		info, err := fn(cctx)
		cancel()
		if err != nil {
			fmt.Fprintf(out, "%-10s FAIL  %v\n", name, err)
			failed = append(failed, name)
			continue
		}
		fmt.Fprintf(out, "%-10s ok    %s\n", name, info)
	}
	if len(failed) > 0 {
		return fmt.Errorf("unreachable: %s", strings.Join(failed, ", "))
	}
	return nil
}

func checkMQTT(_ context.Context, cfg mqttx.Config, timeout time.Duration) (string, error) {
	opts, err := cfg.Options(fmt.Sprintf("sensorflow-check-%d", time.Now().UnixNano()), true)
	if err != nil {
		return "", err
	}
	opts.SetConnectRetry(false).SetAutoReconnect(false).SetConnectTimeout(timeout)
	cl := mqtt.NewClient(opts)
	if err := mqttx.Wait(cl.Connect(), timeout); err != nil {
		return "", fmt.Errorf("connecting to %s: %w", cfg.URL, err)
	}
	cl.Disconnect(100)
	return "CONNACK from " + cfg.URL, nil
}

func checkKafka(ctx context.Context, cfg kafkax.Config) (string, error) {
	cl, err := cfg.Client()
	if err != nil {
		return "", err
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return "", fmt.Errorf("kafka metadata from %s: %w", cfg.Brokers, err)
	}
	return fmt.Sprintf("cluster %s, %d broker(s), %d topic(s)", md.ClusterID, len(md.Brokers), len(md.Topics)), nil
}

func checkCassandra(cfg sink.CassandraConfig, timeout time.Duration) (string, error) {
	cl, err := cfg.Cluster("")
	if err != nil {
		return "", err
	}
	cl.Timeout, cl.ConnectTimeout = timeout, timeout
	cl.ReconnectionPolicy = &gocql.ConstantReconnectionPolicy{MaxRetries: 1, Interval: time.Second}
	sess, err := cl.CreateSession()
	if err != nil {
		return "", fmt.Errorf("connecting to cassandra at %s: %w", cfg.Hosts, err)
	}
	defer sess.Close()
	var version string
	if err := sess.Query(`SELECT release_version FROM system.local`).Scan(&version); err != nil {
		return "", fmt.Errorf("querying system.local: %w", err)
	}
	return "Cassandra " + version, nil
}

func checkInflux(ctx context.Context, cfg sink.InfluxConfig) (string, error) {
	cl, err := cfg.NewClient()
	if err != nil {
		return "", err
	}
	defer cl.Close()
	now := time.Now()
	p := write.NewPoint("sensorflow_check", map[string]string{"probe": "check"}, map[string]any{"ok": 1.0}, now)
	if err := cl.WriteAPIBlocking(cfg.Org, cfg.Bucket).WritePoint(ctx, p); err != nil {
		return "", fmt.Errorf("writing to influxdb bucket %s: %w", cfg.Bucket, err)
	}
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -1m) |> filter(fn: (r) => r._measurement == "sensorflow_check") |> count()`, cfg.Bucket)
	res, err := cl.QueryAPI(cfg.Org).Query(ctx, q)
	if err != nil {
		return "", fmt.Errorf("flux query on bucket %s: %w", cfg.Bucket, err)
	}
	defer res.Close()
	if !res.Next() {
		if res.Err() != nil {
			return "", fmt.Errorf("flux query on bucket %s: %w", cfg.Bucket, res.Err())
		}
		return "", errors.New("the point just written is not readable")
	}
	return "write and Flux read on bucket " + cfg.Bucket, nil
}
