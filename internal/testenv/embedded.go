package testenv

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

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

// RefuseProduce makes cluster answer every produce request with a
// retriable error (NOT_ENOUGH_REPLICAS) while refuse returns true, and
// counts each refused request in refused (nil: not counted): Kafka is down
// for writes while metadata and fetches still work. refuse is called once
// per produce request.
func RefuseProduce(cluster *kfake.Cluster, refuse func() bool, refused *atomic.Int64) {
	cluster.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !refuse() {
			return nil, nil, false
		}
		if refused != nil {
			refused.Add(1)
		}
		cluster.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}
