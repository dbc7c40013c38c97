package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/harness"
	"github.com/sensorflow/sensorflow/internal/kafkax"
)

// telegraf is a Telegraf process of the bench's own: the peer that people
// build this kind of pipeline from, run on the same broker, publishers,
// topics and counters as Sensorflow's services.
type telegraf struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// telegrafBin is the Telegraf that deploy/local/tools.sh builds with only
// the plugins the bench needs (`make bench` builds it first).
func (b *bench) telegrafBin() (string, error) {
	if b.cfg.telegraf != "" {
		return b.cfg.telegraf, nil
	}
	out, err := exec.Command("deploy/local/tools.sh", "path", "telegraf").Output()
	if err != nil {
		return "", fmt.Errorf("deploy/local/tools.sh path telegraf: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (b *bench) startTelegraf(name, conf string) (*telegraf, error) {
	bin, err := b.telegrafBin()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.cfg.out, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cf := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	lf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cf)
	cmd.Env = append(os.Environ(), "SENSORFLOW_BENCH_INFLUX_TOKEN="+b.srv.InfluxToken)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	t := &telegraf{cmd: cmd, done: make(chan struct{}), log: lf.Name()}
	go func() { _ = cmd.Wait(); lf.Close(); close(t.done) }()
	return t, nil
}

func (t *telegraf) stop() {
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(30 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
}

// topicEnd sums the end offsets of a topic's partitions: the messages
// written to it so far.
func topicEnd(ctx context.Context, k kafkax.Config, topic string, partitions int) (int64, error) {
	cl, err := k.Client()
	if err != nil {
		return 0, err
	}
	reqs := make([]kafka.OffsetRequest, partitions)
	for p := range partitions {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	resp, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return 0, po.Error
		}
		sum += po.LastOffset
	}
	return sum, nil
}

// awaitTopicEnd polls until the topic holds want messages; it returns when
// they arrived, or how many did by the deadline.
func awaitTopicEnd(ctx context.Context, k kafkax.Config, topic string, partitions int, want int64, timeout time.Duration) (time.Time, int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := topicEnd(ctx, k, topic, partitions)
		if err == nil && n >= want {
			return time.Now(), n, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, n, fmt.Errorf("%d of %d messages in %s after %s (last error: %v)", n, want, topic, timeout, err)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, n, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// telegrafAgent is the agent section of both configurations: batches of
// batch metrics, a buffer that never drops, a flush at least every second.
func telegrafAgent(batch int) string {
	return fmt.Sprintf(`[agent]
  metric_batch_size = %d
  metric_buffer_limit = 1000000
  flush_interval = "1s"
  flush_jitter = "0s"
  omit_hostname = true
  quiet = true
`, batch)
}

// telegrafBridgeConf configures mqtt_consumer → kafka the way Telegraf's
// docs recommend for delivery guarantees: a persistent session, QoS 1, and
// max_undelivered_messages, so a message is acknowledged to the broker only
// once the output wrote it (Kafka required_acks = -1, like the bridge's
// acks=all). Payloads are parsed as JSON with the reading's time, and the
// message key is the topic, so a device's readings stay in one partition.
func (b *bench) telegrafBridgeConf(id, prefix, topic string) string {
	return telegrafAgent(1000) + fmt.Sprintf(`
[[inputs.mqtt_consumer]]
  servers = [%q]
  topics = ["%s/+/+/telemetry"]
  qos = 1
  persistent_session = true
  client_id = "%s-telegraf"
  max_undelivered_messages = 5000
  topic_tag = "topic"
  data_format = "json"
  json_time_key = "ts"
  json_time_format = "2006-01-02T15:04:05.999999999Z07:00"

[[outputs.kafka]]
  brokers = [%q]
  topic = %q
  routing_tag = "topic"
  required_acks = -1
  max_retry = 10
  data_format = "json"
`, b.srv.MQTTURL, prefix, id, strings.Split(b.srv.KafkaBrokers, ",")[0], topic)
}

// telegrafBridge runs Telegraf's mqtt_consumer → kafka with the same
// publishers and load size as the bridge, rounds of n messages, and adds its
// peer rows: throughput against the same plain-subscriber ceiling, CPU per
// message, peak RSS, and the bridge's ratio to it.
func (b *bench) telegrafBridge(ctx context.Context, pubs *publishers, k kafkax.Config, n int, ceiling, bridgeRate, bridgeCPU float64) error {
	id := b.id + "-tg"
	prefix := id + "-t"
	topic := id + ".telegraf"
	tk := k
	tk.ReadingsTopic, tk.AlertsTopic, tk.DeadLetterTopic = topic, id+".unused-alerts", id+".unused-deadletter"
	if err := tk.EnsureTopics(ctx); err != nil {
		return err
	}
	defer b.dropTopics(tk)
	tg, err := b.startTelegraf("bench-telegraf-bridge", b.telegrafBridgeConf(id, prefix, topic))
	if err != nil {
		return err
	}
	defer tg.stop()
	// Telegraf subscribes once connected; a first message shows it is.
	warm := makeLoad(prefix, 1, 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := pubs.publish(ctx, warm, 1); err != nil {
			return err
		}
		if _, got, err := awaitTopicEnd(ctx, k, topic, tk.Partitions, 1, 2*time.Second); err == nil && got >= 1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("telegraf delivered nothing to kafka within 60s; see %s", tg.log)
		}
	}
	load := makeLoad(prefix, n, 1000)
	var rate, cpuPer []float64
	lost := int64(0)
	for round := range b.cfg.rounds {
		base, err := topicEnd(ctx, k, topic, tk.Partitions)
		if err != nil {
			return err
		}
		cpu0, err := harness.PidCPU(tg.cmd.Process.Pid)
		if err != nil {
			return err
		}
		t0 := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- pubs.publish(ctx, load, 1000) }()
		t1, got, err := awaitTopicEnd(ctx, k, topic, tk.Partitions, base+int64(n), 180*time.Second)
		if perr := <-errc; perr != nil {
			return fmt.Errorf("publishing: %w", perr)
		}
		if err != nil {
			lost += base + int64(n) - got
			b.log.Warn("telegraf round incomplete", "round", round, "err", err)
			continue
		}
		cpu1, _ := harness.PidCPU(tg.cmd.Process.Pid)
		rate = append(rate, float64(n)/t1.Sub(t0).Seconds())
		cpuPer = append(cpuPer, float64((cpu1-cpu0).Microseconds())/float64(n))
		b.log.Info("telegraf bridge round", "round", round, "msg_s", int(rate[len(rate)-1]), "cpu_us_per_msg", cpuPer[len(cpuPer)-1])
	}
	_, peak, _ := harness.PidMemory(tg.cmd.Process.Pid)
	if len(rate) == 0 {
		return fmt.Errorf("no telegraf round completed (%d messages missing); see %s", lost, tg.log)
	}
	b.add(result{Section: "bridge", Name: "peer: Telegraf mqtt_consumer → kafka", Value: best(rate), Unit: "msg/s", Ceiling: ceiling,
		Note: fmt.Sprintf("Telegraf %s (custom build), persistent session, QoS 1, max_undelivered_messages 5000, required_acks -1, JSON in and out; same broker, publishers, %d messages per round, best of %d; lost: %d", telegrafVersion, n, b.cfg.rounds, lost)})
	b.add(result{Section: "bridge", Name: "peer: Telegraf CPU per message", Value: lowest(cpuPer), Unit: "µs", Lower: true})
	b.add(result{Section: "bridge", Name: "peer: Telegraf peak RSS", Value: float64(peak) / (1 << 20), Unit: "MiB"})
	b.add(result{Section: "bridge", Name: "bridge ÷ Telegraf throughput", Value: bridgeRate, Unit: "msg/s", Ceiling: best(rate),
		Note: "ratio above 1: the bridge forwards faster than Telegraf on the same load"})
	b.add(result{Section: "bridge", Name: "Telegraf ÷ bridge CPU per message", Value: lowest(cpuPer), Unit: "µs", Ceiling: bridgeCPU,
		Note: "ratio above 1: Telegraf spends more CPU per message than the bridge"})
	return nil
}

// telegrafVersion is the release deploy/local/tools.sh builds.
const telegrafVersion = "v1.37.2"

// committed sums a consumer group's committed offsets on a topic.
func committed(ctx context.Context, k kafkax.Config, group, topic string, partitions int) (int64, error) {
	cl, err := k.Client()
	if err != nil {
		return 0, err
	}
	parts := make([]int, partitions)
	for p := range parts {
		parts[p] = p
	}
	resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, p := range resp.Topics[topic] {
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum, nil
}

// telegrafProcessorConf configures kafka_consumer → influxdb_v2: the
// readings topic as the bridge fills it, JSON with the reading's time,
// device and site as tags, offsets marked only once InfluxDB took the write
// (max_undelivered_messages).
func (b *bench) telegrafProcessorConf(group, topic string) string {
	return telegrafAgent(5000) + fmt.Sprintf(`
[[inputs.kafka_consumer]]
  brokers = [%q]
  topics = [%q]
  consumer_group = %q
  offset = "oldest"
  ## Kafka 4 serves no fetch older than v4 and converts no record batch down:
  ## sarama must speak a recent protocol.
  version = "3.9.0"
  max_undelivered_messages = 10000
  data_format = "json"
  tag_keys = ["device_id", "site"]
  json_time_key = "ts"
  json_time_format = "2006-01-02T15:04:05.999999999Z07:00"

[[outputs.influxdb_v2]]
  urls = [%q]
  ## From the environment, so the token is not written to the configuration file.
  token = "${SENSORFLOW_BENCH_INFLUX_TOKEN}"
  organization = "sensorflow"
  bucket = %q
`, strings.Split(b.srv.KafkaBrokers, ",")[0], topic, group, b.srv.InfluxURL, b.srv.InfluxBucket)
}

// telegrafProcessor runs Telegraf's kafka_consumer → influxdb_v2 over a topic
// filled with n readings, next to the processor (which also detects), and
// adds its peer rows. Its rate runs from its first committed offset to the
// last, as the processor's runs from its first stored batch.
func (b *bench) telegrafProcessor(ctx context.Context, n int, ceiling, processorRate, processorCPU float64) error {
	id := b.id + "-tgp"
	k := b.kafkaConfig(id)
	if err := b.fillTopic(ctx, k, makeReadings(id, n, 2000)); err != nil {
		return err
	}
	defer b.dropTopics(k)
	group := id + "-telegraf"
	started := time.Now()
	tg, err := b.startTelegraf("bench-telegraf-processor", b.telegrafProcessorConf(group, k.ReadingsTopic))
	if err != nil {
		return err
	}
	defer tg.stop()
	var t0 time.Time
	var c0 int64
	var cpu0 time.Duration
	deadline := time.Now().Add(300 * time.Second)
	for {
		c, err := committed(ctx, k, group, k.ReadingsTopic, k.Partitions)
		if err == nil && c > 0 && t0.IsZero() {
			t0, c0 = time.Now(), c
			cpu0, _ = harness.PidCPU(tg.cmd.Process.Pid)
		}
		if err == nil && c >= int64(n) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("telegraf committed %d of %d readings within 300s; see %s", c, n, tg.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tg.done:
			return fmt.Errorf("telegraf exited; see %s", tg.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t1 := time.Now()
	cpu1, _ := harness.PidCPU(tg.cmd.Process.Pid)
	_, peak, _ := harness.PidMemory(tg.cmd.Process.Pid)
	if c0 >= int64(n) {
		// Everything was committed at the first commit seen: time the run
		// from Telegraf's start instead (its start-up included).
		t0, c0, cpu0 = started, 0, 0
	}
	done := float64(int64(n) - c0)
	rate, cpuPer := done/t1.Sub(t0).Seconds(), float64((cpu1-cpu0).Microseconds())/done
	b.log.Info("telegraf processor run", "readings_s", int(rate), "cpu_us_per_reading", cpuPer)
	b.add(result{Section: "processor", Name: "peer: Telegraf kafka_consumer → influxdb_v2", Value: rate, Unit: "readings/s", Ceiling: ceiling,
		Note: fmt.Sprintf("Telegraf %s (custom build), no detection, JSON in, max_undelivered_messages 10000, metric_batch_size 5000; %d readings, one run; rate from its first committed offset to the last (commits every second)", telegrafVersion, n)})
	b.add(result{Section: "processor", Name: "peer: Telegraf CPU per reading", Value: cpuPer, Unit: "µs", Lower: true})
	b.add(result{Section: "processor", Name: "peer: Telegraf peak RSS", Value: float64(peak) / (1 << 20), Unit: "MiB"})
	b.add(result{Section: "processor", Name: "processor ÷ Telegraf throughput", Value: processorRate, Unit: "readings/s", Ceiling: rate,
		Note: "the processor also scores every reading and writes scores: ratio above 1 means it is faster anyway"})
	b.add(result{Section: "processor", Name: "Telegraf ÷ processor CPU per reading", Value: cpuPer, Unit: "µs", Ceiling: processorCPU})
	return nil
}
