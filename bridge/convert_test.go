package bridge

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

func newTestBridge(t *testing.T) *Bridge {
	var c Config
	fs := flag.NewFlagSet("", flag.PanicOnError)
	c.MQTT.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	c.TopicPrefix = "sensorflow"
	b, err := New(c, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	return b
}

func TestConvert(t *testing.T) {
	b := newTestBridge(t)
	now := time.Now().UTC()
	tests := []struct {
		name, topic, payload string
		wantTopic, reason    string
		wantKey              string
	}{
		{"valid", "sensorflow/plant-1/dev-1/telemetry", `{"seq":3,"metrics":{"temperature":21.5}}`, "sensorflow.readings", "", "dev-1"},
		{"invalid payload", "sensorflow/plant-1/dev-1/telemetry", `{"metrics":{"t":"x"}}`, "sensorflow.deadletter", sensor.ReasonWrongType, "dev-1"},
		{"invalid topic id", "sensorflow/plant 1/dev-1/telemetry", `{"metrics":{"t":1}}`, "sensorflow.deadletter", sensor.ReasonInvalidID, ""},
		{"foreign topic", "other/plant-1/dev-1/telemetry", `{"metrics":{"t":1}}`, "sensorflow.deadletter", sensor.ReasonInvalidTopic, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reason := b.convert(tt.topic, []byte(tt.payload), now, nil)
			require.Equal(t, tt.wantTopic, m.Topic)
			require.Equal(t, tt.reason, reason)
			require.Equal(t, tt.wantKey, string(m.Key))
			if reason == "" {
				require.Contains(t, string(m.Value), `"device_id":"dev-1","site":"plant-1","ts":"`)
				require.Empty(t, m.Headers)
				return
			}
			h := kafkax.HeaderMap(m)
			require.Equal(t, tt.reason, h["reason"])
			require.NotEmpty(t, h["detail"])
			require.Equal(t, tt.topic, h["source_topic"])
			require.Equal(t, now.Format(time.RFC3339Nano), h["received_at"])
			require.Equal(t, tt.payload, string(m.Value), "the original payload is kept")
		})
	}
}

func TestDeadLetterTruncatesHugePayloads(t *testing.T) {
	b := newTestBridge(t)
	payload := []byte(strings.Repeat("x", 10<<20))
	m, reason := b.convert("sensorflow/s/d/telemetry", payload, time.Now(), nil)
	require.Equal(t, sensor.ReasonPayloadTooLarge, reason)
	require.Len(t, m.Value, kafkax.MaxDeadLetterPayload)
	h := kafkax.HeaderMap(m)
	require.Equal(t, "true", h["truncated"])
	require.Equal(t, "10485760", h["original_size"])
}

func TestDeadLetterCutsLongTopics(t *testing.T) {
	b := newTestBridge(t)
	topic := "sensorflow/" + strings.Repeat("a", 5000) + "/d/telemetry"
	m, _ := b.convert(topic, []byte(`{}`), time.Now(), nil)
	require.Len(t, kafkax.HeaderMap(m)["source_topic"], 1024)
}

func TestConfigValidate(t *testing.T) {
	b := newTestBridge(t)
	c := b.cfg
	c.QueueSize = c.BatchSize - 1
	require.Error(t, c.Validate())
	c = b.cfg
	c.MQTT.URL = "http://broker"
	require.Error(t, c.Validate())
	c = b.cfg
	c.Kafka.Brokers = " , "
	require.Error(t, c.Validate())
}

func TestRecentForgetsTheOldest(t *testing.T) {
	r := newRecent(3)
	for _, k := range []string{"a", "b", "c"} {
		if !r.add(k) {
			t.Fatalf("%s is new", k)
		}
	}
	if r.add("a") || r.add("c") {
		t.Fatal("a and c were seen")
	}
	if !r.add("d") { // evicts a
		t.Fatal("d is new")
	}
	if !r.add("a") {
		t.Fatal("a was evicted, so it is new again")
	}
	if r.add("d") {
		t.Fatal("d was seen")
	}
}

// fakeMessage is an MQTT message for convertBatch.
type fakeMessage struct {
	mqtt.Message
	topic   string
	payload []byte
}

func (m fakeMessage) Topic() string   { return m.topic }
func (m fakeMessage) Payload() []byte { return m.payload }

// A batch's messages share one buffer for their keys and values: every
// message keeps its own bytes however often the buffer grows, rejected
// messages among them.
func TestConvertBatchSharedBuffer(t *testing.T) {
	b := newTestBridge(t)
	bt := &chunk{}
	const n = 300
	for i := range n {
		dev := fmt.Sprintf("dev-%d%s", i, strings.Repeat("x", i%40))
		payload := fmt.Sprintf(`{"seq":%d,"metrics":{"temperature":%d.5,"humidity":%d}}`, i, i, 100-i%50)
		if i%7 == 3 {
			payload = `{"metrics":{"t":"x"}}`
		}
		bt.in = append(bt.in, fakeMessage{topic: "sensorflow/plant-1/" + dev + "/telemetry", payload: []byte(payload)})
	}
	b.convertBatch(bt)
	require.Len(t, bt.out, n)
	for i, m := range bt.out {
		dev := fmt.Sprintf("dev-%d%s", i, strings.Repeat("x", i%40))
		require.Equal(t, dev, string(m.Key), i)
		if i%7 == 3 {
			require.Equal(t, "sensorflow.deadletter", m.Topic, i)
			continue
		}
		r, err := sensor.ParseReading(m.Value)
		require.NoError(t, err, i)
		require.Equal(t, dev, r.DeviceID)
		require.Equal(t, int64(i), r.Seq)
		require.Equal(t, float64(i)+0.5, r.Metrics["temperature"])
		require.Equal(t, float64(100-i%50), r.Metrics["humidity"])
		require.Equal(t, len(m.Key), cap(m.Key), "a key cannot grow into its neighbour")
		require.Equal(t, len(m.Value), cap(m.Value), "a value cannot grow into its neighbour")
	}
	require.Equal(t, n-(n+3)/7, bt.forwarded)
}
