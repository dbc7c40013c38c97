package bridge

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

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
			m, reason := b.convert(tt.topic, []byte(tt.payload), now)
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
	m, reason := b.convert("sensorflow/s/d/telemetry", payload, time.Now())
	require.Equal(t, sensor.ReasonPayloadTooLarge, reason)
	require.Len(t, m.Value, kafkax.MaxDeadLetterPayload)
	h := kafkax.HeaderMap(m)
	require.Equal(t, "true", h["truncated"])
	require.Equal(t, "10485760", h["original_size"])
}

func TestDeadLetterCutsLongTopics(t *testing.T) {
	b := newTestBridge(t)
	topic := "sensorflow/" + strings.Repeat("a", 5000) + "/d/telemetry"
	m, _ := b.convert(topic, []byte(`{}`), time.Now())
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
