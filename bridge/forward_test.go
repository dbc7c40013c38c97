package bridge

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
)

// The bridge's guarantees, each proved without servers on the embedded MQTT
// broker and the embedded Kafka-protocol broker: no PUBACK before Kafka
// acknowledged the message, PUBACKs in arrival order, and what was not
// acknowledged is redelivered to the bridge's next session.

// wire records, per packet id, what the broker sent the bridge and what the
// bridge acknowledged, in order.
type wire struct {
	mochi.HookBase
	client string
	mu     sync.Mutex
	sent   []uint16 // PUBLISH to the bridge, first deliveries only
	acked  []uint16 // PUBACK from the bridge
}

func (w *wire) ID() string { return "wire" }

func (w *wire) Provides(b byte) bool {
	return b == mochi.OnPacketSent || b == mochi.OnPacketRead
}

func (w *wire) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	if cl.ID == w.client && pk.FixedHeader.Type == packets.Publish && !pk.FixedHeader.Dup {
		w.mu.Lock()
		w.sent = append(w.sent, pk.PacketID)
		w.mu.Unlock()
	}
}

func (w *wire) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.ID == w.client && pk.FixedHeader.Type == packets.Puback {
		w.mu.Lock()
		w.acked = append(w.acked, pk.PacketID)
		w.mu.Unlock()
	}
	return pk, nil
}

func (w *wire) snapshot() (sent, acked []uint16) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sent), slices.Clone(w.acked)
}

type loop struct {
	broker  *mochi.Server
	cluster *kfake.Cluster
	wire    *wire
	cfg     Config
	// kafkaDown makes the Kafka broker refuse every produce request of the
	// bridge; refused counts them.
	kafkaDown atomic.Bool
	refused   atomic.Int64
}

func newLoop(t *testing.T) *loop {
	broker, url := testenv.EmbeddedMQTT(t)
	cluster, brokers := testenv.EmbeddedKafka(t)
	l := &loop{broker: broker, cluster: cluster}
	fs := flag.NewFlagSet("", flag.PanicOnError)
	l.cfg.MQTT.RegisterFlags(fs)
	l.cfg.Kafka.RegisterFlags(fs)
	l.cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	id := testenv.Unique("bridge")
	l.cfg.MQTT.URL = url
	l.cfg.Kafka.Brokers = brokers
	l.cfg.Kafka.ReadingsTopic, l.cfg.Kafka.AlertsTopic, l.cfg.Kafka.DeadLetterTopic = id+".readings", id+".alerts", id+".deadletter"
	l.cfg.Kafka.Partitions = 1
	l.cfg.TopicPrefix = id
	l.cfg.ClientID = id
	l.cfg.ForwardAlerts = false
	l.cfg.BatchSize, l.cfg.Linger = 16, 0 // adaptive batches (the bridge lingers 5 ms by default)
	l.wire = &wire{client: id}
	require.NoError(t, broker.AddHook(l.wire, nil))
	testenv.RefuseProduce(cluster, l.kafkaDown.Load, &l.refused)
	return l
}

// start runs a bridge until stop is called or the test ends, and waits
// until it is subscribed.
func (l *loop) start(t *testing.T) (stop func()) {
	b, err := New(l.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("bridge did not stop")
			}
		})
	}
	t.Cleanup(stop)
	require.Eventually(t, func() bool { return b.mqttUp.Load() }, 20*time.Second, 10*time.Millisecond)
	return stop
}

// publish sends n valid readings of one device at QoS 1, seqs from..from+n-1.
func (l *loop) publish(t *testing.T, from, n int) {
	opts := mqtt.NewClientOptions().AddBroker(l.cfg.MQTT.URL).SetClientID(l.cfg.ClientID + "-device")
	cl := mqtt.NewClient(opts)
	require.NoError(t, mqttx.Wait(cl.Connect(), 10*time.Second))
	defer cl.Disconnect(100)
	topic := l.cfg.TopicPrefix + "/site-1/dev-1/telemetry"
	for seq := from; seq < from+n; seq++ {
		payload := fmt.Sprintf(`{"seq":%d,"metrics":{"temperature":21.5}}`, seq)
		require.NoError(t, mqttx.Wait(cl.Publish(topic, 1, false, payload), 10*time.Second))
	}
}

// kafkaSeqs reads the readings topic until it holds want distinct seqs and
// returns every seq read, duplicates included, in order.
func (l *loop) kafkaSeqs(t *testing.T, want int) []int64 {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: l.cfg.Kafka.BrokerList(), Topic: l.cfg.Kafka.ReadingsTopic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seqs []int64
	distinct := map[int64]bool{}
	for len(distinct) < want {
		m, err := r.ReadMessage(ctx)
		require.NoError(t, err, "Kafka holds %d of %d readings", len(distinct), want)
		rd, err := sensor.ParseReading(m.Value)
		require.NoError(t, err)
		seqs = append(seqs, rd.Seq)
		distinct[rd.Seq] = true
	}
	return seqs
}

func seqRange(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

func TestNoPubackBeforeKafkaAcknowledges(t *testing.T) {
	l := newLoop(t)
	l.start(t)
	l.kafkaDown.Store(true)
	l.publish(t, 0, 20)
	require.Eventually(t, func() bool { return l.refused.Load() >= 3 }, 20*time.Second, 10*time.Millisecond)
	sent, acked := l.wire.snapshot()
	require.Len(t, sent, 20, "the broker delivered every message to the bridge")
	require.Empty(t, acked, "no PUBACK while Kafka refuses the write")
	l.kafkaDown.Store(false)
	require.Eventually(t, func() bool { _, acked := l.wire.snapshot(); return len(acked) == 20 }, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, seqRange(20), l.kafkaSeqs(t, 20))
}

func TestPubacksInArrivalOrder(t *testing.T) {
	l := newLoop(t)
	l.start(t)
	l.publish(t, 0, 500) // about 30 batches of 16
	require.Eventually(t, func() bool { _, acked := l.wire.snapshot(); return len(acked) == 500 }, 30*time.Second, 10*time.Millisecond)
	sent, acked := l.wire.snapshot()
	require.Len(t, sent, 500)
	require.Equal(t, sent, acked, "PUBACKs in the order the broker delivered")
	require.Equal(t, seqRange(500), l.kafkaSeqs(t, 500), "Kafka holds the device's readings in order")
}

// A bridge that stops with messages it could not write to Kafka leaves them
// unacknowledged in its persistent session; the broker redelivers them to
// the bridge's next session, which writes them. Nothing is lost.
func TestUnacknowledgedMessagesAreRedeliveredOnReconnect(t *testing.T) {
	l := newLoop(t)
	l.cfg.DrainTimeout = 200 * time.Millisecond
	stop := l.start(t)
	l.kafkaDown.Store(true)
	l.publish(t, 0, 20)
	require.Eventually(t, func() bool { return l.refused.Load() >= 2 }, 20*time.Second, 10*time.Millisecond)
	stop() // gives up on the batch in hand after the drain timeout
	_, acked := l.wire.snapshot()
	require.Empty(t, acked)
	l.publish(t, 20, 10) // queued in the session while the bridge is away
	l.kafkaDown.Store(false)
	l.start(t)
	seqs := l.kafkaSeqs(t, 30)
	slices.Sort(seqs)
	require.Equal(t, seqRange(30), slices.Compact(seqs))
	require.Eventually(t, func() bool {
		cl, ok := l.broker.Clients.Get(l.cfg.ClientID)
		return ok && cl.State.Inflight.Len() == 0
	}, 20*time.Second, 10*time.Millisecond, "every redelivered message was acknowledged")
}
