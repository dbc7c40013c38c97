// Package e2e runs the whole Sensorflow pipeline against the real servers:
// simulator → Mosquitto → bridge → Kafka → processor → InfluxDB and
// Cassandra, with alerts back on Kafka and MQTT.
package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gocql/gocql"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/bridge"
	"github.com/sensorflow/sensorflow/cli"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/processor"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/simulator"
)

// stack is one isolated deployment on the shared servers: its own topics,
// MQTT prefix, groups, device ids and Cassandra keyspace.
type stack struct {
	id        string
	mqtt      mqttx.Config
	kafka     kafkax.Config
	prefix    string
	bridge    bridge.Config
	processor processor.Config
	influx    sink.InfluxConfig
	cassandra sink.CassandraConfig
	sim       simulator.Config
}

func defaults(register func(fs *flag.FlagSet)) {
	fs := flag.NewFlagSet("defaults", flag.PanicOnError)
	register(fs)
	_ = fs.Parse(nil)
}

func newStack(t *testing.T) *stack {
	s := &stack{id: testenv.Unique("e2e")}
	defaults(s.mqtt.RegisterFlags)
	defaults(s.kafka.RegisterFlags)
	defaults(s.bridge.RegisterFlags)
	defaults(s.processor.RegisterFlags)
	defaults(s.influx.RegisterFlags)
	defaults(s.cassandra.RegisterFlags)
	defaults(s.sim.RegisterFlags)
	s.mqtt.URL = testenv.MQTT(t)
	s.kafka.Brokers = testenv.Kafka(t)
	s.kafka.ReadingsTopic = s.id + ".readings"
	s.kafka.AlertsTopic = s.id + ".alerts"
	s.kafka.DeadLetterTopic = s.id + ".deadletter"
	s.prefix = s.id
	s.bridge.MQTT, s.bridge.Kafka, s.bridge.TopicPrefix = s.mqtt, s.kafka, s.prefix
	s.bridge.ClientID = s.id + "-bridge"
	s.bridge.ShareGroup = s.id
	s.bridge.AlertsGroup = s.id + "-bridge-alerts"
	s.processor.Kafka = s.kafka
	s.processor.GroupID = s.id + "-processor"
	url, token, bucket := testenv.Influx(t)
	s.influx.URL, s.influx.Token, s.influx.Bucket = url, token, bucket
	s.cassandra.Hosts = testenv.Cassandra(t)
	s.cassandra.Keyspace = strings.ReplaceAll(s.id, "-", "_")
	s.sim.MQTT, s.sim.TopicPrefix = s.mqtt, s.prefix
	s.sim.DevicePrefix = s.id + "-dev-"
	s.sim.SitePrefix = s.id + "-site-"
	s.sim.ClientPrefix = s.id + "-sim"
	s.sim.ProgressEvery = 0
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

func (s *stack) cleanup(t *testing.T) {
	cl, err := s.kafka.Client()
	if err == nil {
		_, _ = cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{s.kafka.ReadingsTopic, s.kafka.AlertsTopic, s.kafka.RawAlerts(), s.kafka.DeadLetterTopic}})
	}
	if cc, err := s.cassandra.Cluster(""); err == nil {
		if sess, err := cc.CreateSession(); err == nil {
			_ = sess.Query(`DROP KEYSPACE IF EXISTS ` + s.cassandra.Keyspace).Exec()
			sess.Close()
		}
	}
	t.Logf("stack %s cleaned up", s.id)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServices runs the bridge and the processor until the test ends and
// returns the registry of their metrics.
func (s *stack) startServices(t *testing.T, ctx context.Context) *prometheus.Registry {
	log := testLogger(t)
	reg := prometheus.NewRegistry()
	b, err := bridge.New(s.bridge, log.With("component", "bridge"), reg)
	require.NoError(t, err)
	pc := s.processor
	pc.Sinks = nil
	if s.influx.Enabled {
		pc.Sinks = append(pc.Sinks, s.influx.Spec(slog.Default()))
	}
	if s.cassandra.Enabled {
		pc.Sinks = append(pc.Sinks, s.cassandra.Spec(log))
	}
	p, err := processor.New(pc, log.With("component", "processor"), reg)
	require.NoError(t, err)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	for _, svc := range []interface{ Run(context.Context) error }{b, p} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Run(ctx); err != nil {
				t.Errorf("service stopped: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, func() bool { return b.Ready() == nil && p.Ready() == nil }, 2*time.Minute, 200*time.Millisecond,
		"bridge and processor not ready")
	return reg
}

func TestPipelineEndToEnd(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// An edge subscriber to every alert, connected before anything runs.
	mqttAlerts := subscribeAlerts(t, s)

	s.startServices(t, ctx)

	dir := t.TempDir()
	s.sim.Devices = 50
	s.sim.Count = 11000 // published and silenced by dropouts
	s.sim.Speed = 0
	s.sim.AnomalyRate = 0.02
	s.sim.AnomalyWarmup = 60
	s.sim.Seed = 7
	s.sim.Start = time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	s.sim.GroundTruth = filepath.Join(dir, "truth.jsonl")
	s.sim.AckLog = filepath.Join(dir, "acks.log")
	sim, err := simulator.New(s.sim, testLogger(t).With("component", "simulator"), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, sim.Run(ctx))
	st := sim.Stats()
	t.Logf("simulator: published %d, acked %d, errors %d, anomalies %d, dropped by dropouts %d", st.Published, st.Acked, st.Errors, st.Anomalies, st.Dropped)
	require.Zero(t, st.Errors)
	require.Equal(t, st.Published, st.Acked)
	require.GreaterOrEqual(t, st.Published, int64(10000))

	bad := publishMalformed(t, s)

	acked := readAckLog(t, s.sim.AckLog)
	require.Len(t, acked, 50, "every device published")

	// Every acknowledged reading is in InfluxDB exactly once, per device.
	require.Eventually(t, func() bool {
		got := influxCounts(t, s)
		for dev, n := range acked {
			if got[dev] != n {
				return false
			}
		}
		return len(got) == len(acked)
	}, 4*time.Minute, 2*time.Second, "influxdb counts per device never matched the acknowledged readings")

	// And in Cassandra, one row per reading and metric.
	sess := cassandraSession(t, s)
	defer sess.Close()
	// (The two sinks are written concurrently: InfluxDB may have the last
	// batch before Cassandra does.)
	require.Eventually(t, func() bool {
		for dev, n := range acked {
			if cassandraReadings(t, sess, dev) != n {
				return false
			}
		}
		return true
	}, 2*time.Minute, time.Second, "cassandra rows per device never matched the acknowledged readings")

	// Alerts for injected anomalies arrive on Kafka and on MQTT.
	truth := sim.Truth()
	require.NotEmpty(t, truth)
	kafkaAlerts := readAll(t, s.kafka.Brokers, s.kafka.AlertsTopic)
	require.NotEmpty(t, kafkaAlerts, "no alert on kafka")
	opened := map[string]sensor.Alert{}
	for _, m := range kafkaAlerts {
		var a sensor.Alert
		require.NoError(t, json.Unmarshal(m.Value, &a))
		if a.DeviceID == sensor.SiteDevice {
			require.Equal(t, a.Site, string(m.Key), "an incident is keyed by its site")
		} else {
			require.Equal(t, a.DeviceID, string(m.Key))
		}
		if a.State == sensor.StateOpen {
			opened[a.AlertID] = a
		}
	}
	found, matched := 0, map[string]bool{}
	for _, g := range truth {
		if g.Kind == simulator.AnomalyDropout {
			continue
		}
		for id, a := range opened {
			if a.DeviceID == g.DeviceID && a.Metric == g.Metric && !a.StartedAt.Before(g.Start) && !a.StartedAt.After(g.End.Add(10*time.Second)) {
				found++
				matched[id] = true
				break
			}
		}
	}
	t.Logf("alerts: %d events on kafka, %d opened, %d of %d injected anomalies (no dropouts) found, %d opened alerts match none",
		len(kafkaAlerts), len(opened), found, countNonDropout(truth), len(opened)-len(matched))
	require.Positive(t, found, "no injected anomaly raised an alert")

	require.Eventually(t, func() bool { return mqttAlerts.count() >= len(kafkaAlerts) }, time.Minute, 500*time.Millisecond,
		"mqtt subscribers got %d of %d alerts", mqttAlerts.count(), len(kafkaAlerts))
	for _, m := range mqttAlerts.all() {
		var a sensor.Alert
		require.NoError(t, json.Unmarshal(m.payload, &a))
		require.Equal(t, sensor.Topics{Prefix: s.prefix}.Alerts(a.Site, a.DeviceID), m.topic)
	}

	// Malformed payloads land in the dead-letter topic with their reasons.
	dead := readAll(t, s.kafka.Brokers, s.kafka.DeadLetterTopic)
	reasons := map[string]string{}
	for _, m := range dead {
		h := kafkax.HeaderMap(m)
		reasons[string(m.Value)] = h["reason"]
		require.NotEmpty(t, h["detail"])
		require.NotEmpty(t, h["source_topic"])
		_, err := time.Parse(time.RFC3339Nano, h["received_at"])
		require.NoError(t, err)
	}
	for payload, reason := range bad {
		require.Equal(t, reason, reasons[payload], "dead letter of %q", payload)
	}

	// `sensorflow query` reads the archive back.
	dev := s.sim.DevicePrefix + "00001"
	var out bytes.Buffer
	q := cli.QueryConfig{Cassandra: s.cassandra, Device: dev, Metric: "temperature", From: "30d", To: "0s", Format: "csv", Limit: 1e6}
	require.NoError(t, cli.Query(ctx, q, &out))
	rows, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"ts", "device_id", "metric", "value", "seq", "site"}, rows[0])
	require.Len(t, rows[1:], acked[dev])
	for i := 2; i < len(rows); i++ {
		require.Less(t, rows[i-1][0], rows[i][0], "oldest first, no duplicates")
	}

	// Every Flux query of the Grafana dashboards returns data from this run.
	checkDashboardFlux(t, s, s.id+"-site-0", s.id+"-dev-00000")

	// `sensorflow alerts` follows the alert stream.
	out.Reset()
	ac := cli.AlertsConfig{Kafka: s.kafka, Source: "kafka", JSON: true, FromStart: true, Count: len(kafkaAlerts)}
	actx, acancel := context.WithTimeout(ctx, time.Minute)
	defer acancel()
	require.NoError(t, cli.Alerts(actx, ac, &out))
	require.Len(t, strings.Split(strings.TrimSpace(out.String()), "\n"), len(kafkaAlerts))
}

func countNonDropout(truth []simulator.GroundTruth) int {
	n := 0
	for _, g := range truth {
		if g.Kind != simulator.AnomalyDropout {
			n++
		}
	}
	return n
}

// publishMalformed sends broken payloads on a device's topic and returns
// them with the rejection reason each must get.
func publishMalformed(t *testing.T, s *stack) map[string]string {
	bad := map[string]string{
		`{"metrics":{"temperature":"NaN"}}`: sensor.ReasonWrongType,
		`not json`:                          sensor.ReasonInvalidJSON,
		`{"device_id":"someone-else","metrics":{"temperature":1}}`: sensor.ReasonIDMismatch,
		`{"metrics":{}}`: sensor.ReasonNoMetrics,
		`{"ts":"2026-13-45T99:00:00Z","metrics":{"temperature":1}}`:        sensor.ReasonInvalidTimestamp,
		`{"seq":-5,"metrics":{"temperature":1}}`:                           sensor.ReasonNegativeSeq,
		`{"metrics":{"temperature":1e999}}`:                                sensor.ReasonValueOutOfRange,
		`{"metrics":{"Temperature,site=x":1}}`:                             sensor.ReasonInvalidMetricName,
		`{"metrics":{"temperature":1},"metrics":{"temperature":2}}`:        sensor.ReasonDuplicateKey,
		`{"ts":"1999-01-01T00:00:00Z","metrics":{"temperature":1}}`:        sensor.ReasonTimestampRange,
		`{"metrics":{"temperature":1},"injected":"x\" |> drop() //"}`:      sensor.ReasonUnknownField,
		`{"site":"x'); DROP TABLE readings; --","metrics":{"humidity":1}}`: sensor.ReasonInvalidID,
	}
	o, err := s.mqtt.Options(s.id+"-bad", true)
	require.NoError(t, err)
	c := mqtt.NewClient(o)
	require.NoError(t, mqttx.Wait(c.Connect(), 10*time.Second))
	defer c.Disconnect(100)
	topic := sensor.Topics{Prefix: s.prefix}.Telemetry(s.id+"-site-0", s.id+"-dev-00000")
	for p := range bad {
		require.NoError(t, mqttx.Wait(c.Publish(topic, 1, false, p), 10*time.Second))
	}
	// An id in the topic that breaks the rules.
	badTopic := s.prefix + "/site 1/dev-1/telemetry"
	require.NoError(t, mqttx.Wait(c.Publish(badTopic, 1, false, `{"metrics":{"v":1}}`), 10*time.Second))
	return bad
}

type received struct {
	topic   string
	payload []byte
}

type collector struct {
	mu   sync.Mutex
	msgs []received
}

func (c *collector) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.msgs) }
func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.msgs...)
}

func subscribeAlerts(t *testing.T, s *stack) *collector {
	col := &collector{}
	o, err := s.mqtt.Options(s.id+"-alert-sub", true)
	require.NoError(t, err)
	filter := sensor.Topics{Prefix: s.prefix}.AlertsFilter()
	subscribed := make(chan error, 1)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			col.mu.Lock()
			col.msgs = append(col.msgs, received{m.Topic(), m.Payload()})
			col.mu.Unlock()
		})
		go func() { tok.Wait(); subscribed <- tok.Error() }()
	})
	c := mqtt.NewClient(o)
	require.NoError(t, mqttx.Wait(c.Connect(), 10*time.Second))
	select { // alerts published before the SUBACK would not reach us
	case err := <-subscribed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no SUBACK for the alert subscription")
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return col
}

// readAckLog counts the acknowledged readings per device.
func readAckLog(t *testing.T, path string) map[string]int {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	seen := map[string]bool{}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		require.Len(t, f, 3)
		if key := f[0] + " " + f[1]; !seen[key] {
			seen[key] = true
			out[f[0]]++
		}
	}
	return out
}

func influxCounts(t *testing.T, s *stack) map[string]int {
	return influxQueryCounts(t, s, fmt.Sprintf(`strings.hasPrefix(v: r.device_id, prefix: %q)`, s.sim.DevicePrefix))
}

// influxQueryCounts counts the temperature points per device that match a
// Flux predicate on r.
func influxQueryCounts(t *testing.T, s *stack, predicate string) map[string]int {
	cfg := s.influx
	cl := influxdb2.NewClient(cfg.URL, cfg.Token)
	defer cl.Close()
	q := fmt.Sprintf(`import "strings"
from(bucket: %q)
  |> range(start: -30d)
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and %s)
  |> group(columns: ["device_id"])
  |> count()`, cfg.Bucket, predicate)
	res, err := cl.QueryAPI(cfg.Org).Query(context.Background(), q)
	if err != nil {
		t.Logf("influx query: %v", err)
		return nil
	}
	defer res.Close()
	out := map[string]int{}
	for res.Next() {
		dev, _ := res.Record().ValueByKey("device_id").(string)
		n, _ := res.Record().Value().(int64)
		out[dev] = int(n)
	}
	return out
}

func cassandraSession(t *testing.T, s *stack) *gocql.Session {
	cc, err := s.cassandra.Cluster(s.cassandra.Keyspace)
	require.NoError(t, err)
	sess, err := cc.CreateSession()
	require.NoError(t, err)
	return sess
}

// cassandraReadings counts the temperature rows of a device over the days
// the test covers.
func cassandraReadings(t *testing.T, sess *gocql.Session, dev string) int {
	total := 0
	for d := -2; d <= 0; d++ {
		day := time.Now().UTC().AddDate(0, 0, d).Truncate(24 * time.Hour)
		var n int
		require.NoError(t, sess.Query(`SELECT count(*) FROM readings WHERE device_id = ? AND metric = ? AND day = ?`, dev, "temperature", day).Scan(&n))
		total += n
	}
	return total
}

// readAll reads every message of a topic, up to each partition's end.
func readAll(t *testing.T, brokers, topic string) []kafka.Message {
	addrs := strings.Split(brokers, ",")
	cl := &kafka.Client{Addr: kafka.TCP(addrs...)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A busy broker may answer a metadata request with a topic error and
	// no partitions (a leader not yet known): ask again rather than read
	// nothing.
	var md *kafka.MetadataResponse
	for {
		var err error
		md, err = cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		require.NoError(t, err)
		require.Len(t, md.Topics, 1)
		if md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0 {
			break
		}
		require.NoError(t, ctx.Err(), "metadata of %s: %v", topic, md.Topics[0].Error)
		time.Sleep(100 * time.Millisecond)
	}
	var out []kafka.Message
	for _, p := range md.Topics[0].Partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", addrs[0], topic, p.ID)
		require.NoError(t, err)
		last, err := conn.ReadLastOffset()
		conn.Close()
		require.NoError(t, err)
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: addrs, Topic: topic, Partition: p.ID, MaxWait: 200 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			require.NoError(t, err)
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}
