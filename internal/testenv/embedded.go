package testenv

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
)

// EmbeddedMQTT starts the in-process MQTT broker of the demo on a free
// loopback port for a hermetic test and returns it with its URL. It is
// closed when the test ends. Tests observe it through mochi hooks.
func EmbeddedMQTT(t testing.TB) (*mochi.Server, string) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	s, err := mqttx.ServeEmbedded(addr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("embedded mqtt broker: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, "tcp://" + addr
}

// EmbeddedKafka starts the in-process Kafka-protocol broker of the demo
// (kfake) on a free loopback port for a hermetic test and returns it with
// its bootstrap address. It is closed when the test ends. Tests observe and
// steer requests with its ControlKey.
func EmbeddedKafka(t testing.TB) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kafkax.ServeEmbedded(0)
	if err != nil {
		t.Fatalf("embedded kafka broker: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}
