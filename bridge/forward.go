package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/batch"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// forward runs the MQTT → Kafka path until ctx ends.
func (b *Bridge) forward(ctx context.Context) error {
	q := make(chan mqtt.Message, b.cfg.QueueSize)
	var lastIn atomic.Int64 // unix nanoseconds of the latest message
	enqueue := func(_ mqtt.Client, m mqtt.Message) {
		// Never blocks in steady state: the queue is larger than the
		// broker's in-flight window, and nothing is acknowledged (so the
		// window does not move) until the writer drained the queue.
		lastIn.Store(time.Now().UnixNano())
		q <- m
	}
	filter := b.topics.TelemetryFilter()
	if b.cfg.ShareGroup != "" {
		filter = "$share/" + b.cfg.ShareGroup + "/" + filter
	}
	opts, err := b.cfg.MQTT.Options(b.cfg.ClientID, false)
	if err != nil {
		return err
	}
	opts.SetAutoAckDisabled(true)
	var acks mqttx.Acks
	acks.Attach(opts)
	// The broker keeps the session; a copy of every unacknowledged message
	// in paho's memory store would only cost time.
	opts.SetStore(noStore{})
	// With a persistent session the broker may deliver before Subscribe
	// returns: route such messages to the same queue.
	opts.SetDefaultPublishHandler(enqueue)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		acks.Connected()
		b.m.connected.Set(1)
		b.m.connects.Inc()
		// No callback: every message goes to the default handler (enqueue),
		// which spares paho matching each topic against a route (two
		// strings.Split per message).
		t := c.Subscribe(filter, 1, nil)
		go func() {
			if err := mqttx.Wait(t, 30*time.Second); err != nil {
				// Reconnecting makes OnConnect subscribe again.
				b.log.Error("mqtt subscribe failed, reconnecting", "filter", filter, "err", err)
				c.Disconnect(0)
				return
			}
			b.mqttUp.Store(true) // ready only once the broker confirmed the subscription
			b.log.Info("mqtt subscribed", "filter", filter, "client_id", b.cfg.ClientID)
		}()
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		b.mqttUp.Store(false)
		b.m.connected.Set(0)
		b.log.Warn("mqtt connection lost", "err", err)
	})
	cl := mqtt.NewClient(opts)
	t := cl.Connect() // retries until connected
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("connecting to mqtt %s: %w", b.cfg.MQTT.URL, err)
		}
	case <-ctx.Done():
		cl.Disconnect(0)
		return nil
	}
	defer func() {
		cl.Disconnect(250)
		b.mqttUp.Store(false)
		b.m.connected.Set(0)
	}()

	// The collector below lingers (-bridge.linger) and hands over whole
	// batches: kafka-go must not wait again for its partition batches to
	// fill, which would add up to a linger to every write.
	w, err := b.cfg.Kafka.Writer(b.cfg.BatchSize, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	kafkax.Warm(ctx, w, b.log, b.cfg.Kafka.ReadingsTopic, b.cfg.Kafka.DeadLetterTopic)

	// Writes outlive ctx by DrainTimeout so the batch in hand can finish.
	drainCtx, cancelDrain := batch.Drain(ctx, b.cfg.DrainTimeout)
	defer cancelDrain()

	// Two stages: the collector batches and converts while the writer has
	// the previous batch in Kafka, so decoding overlaps the round trip.
	// Batches stay in arrival order through both.
	converted := make(chan *chunk, 2)
	intake, stopIntake := context.WithCancel(context.WithoutCancel(ctx))
	defer stopIntake()
	context.AfterFunc(ctx, func() { b.leave(cl, filter, q, &lastIn, stopIntake) })
	go b.collect(intake, q, converted)
	for bt := range converted {
		if err := b.writeBatch(drainCtx, w, bt); err != nil {
			// Only a drain deadline gets here: leave this batch and the
			// rest unacknowledged for the broker to redeliver.
			b.log.Warn("batch left unacknowledged at shutdown", "messages", len(bt.in), "err", err)
			for range converted {
			}
			return nil
		}
		// MQTT 3.1.1 wants PUBACKs in arrival order: ack from the head.
		acks.Ack(bt.in)
		b.m.unacked.Set(0)
	}
	return nil
}

// chunk is a batch of MQTT messages and the Kafka messages they became.
type chunk struct {
	in        []mqtt.Message
	out       []kafka.Message
	forwarded int
	rejected  map[string]int
}

// leave ends the intake at shutdown. A plain subscription stays with the
// persistent session: the broker keeps what arrives and redelivers what is
// unacknowledged when the bridge is back. A member of a shared subscription
// unsubscribes first, so the broker sends the group's messages to the other
// members instead of queueing them for a session that may never return
// (scaled in, or a new client id), then takes in and acknowledges what the
// broker had already sent it, until nothing arrived for quietFor (at most
// -bridge.drain-timeout).
func (b *Bridge) leave(cl mqtt.Client, filter string, q chan mqtt.Message, lastIn *atomic.Int64, stopIntake func()) {
	defer stopIntake()
	if b.cfg.ShareGroup == "" || !cl.IsConnectionOpen() {
		return
	}
	if err := mqttx.Wait(cl.Unsubscribe(filter), 5*time.Second); err != nil {
		b.log.Warn("leaving the shared subscription failed; the broker keeps queueing for this session", "filter", filter, "err", err)
		return
	}
	const quietFor = 500 * time.Millisecond
	deadline := time.Now().Add(b.cfg.DrainTimeout)
	for time.Now().Before(deadline) {
		if len(q) == 0 && time.Since(time.Unix(0, lastIn.Load())) > quietFor {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.log.Info("left the shared subscription", "filter", filter)
}

// collect fills batches from q under the bridge's batch policy, converts
// them and passes them on until ctx ends; then it closes out.
func (b *Bridge) collect(ctx context.Context, q <-chan mqtt.Message, out chan<- *chunk) {
	defer close(out)
	c := batch.NewCollector(q, b.cfg.batchPolicy())
	for {
		in, ok := c.Next(ctx, c.Buf())
		if !ok {
			return
		}
		bt := &chunk{in: in}
		b.m.queue.Set(float64(len(q)))
		b.convertBatch(bt)
		select {
		case out <- bt:
		case <-ctx.Done():
			// Hand over the batch in hand for the writer to drain.
			out <- bt
			return
		}
	}
}

// convertBatch turns every message of bt into its Kafka message.
func (b *Bridge) convertBatch(bt *chunk) {
	bt.out = make([]kafka.Message, 0, len(bt.in))
	now := time.Now()
	// The keys and values of the batch share one buffer: two allocations per
	// batch instead of two per message.
	arena := make([]byte, 0, 192*len(bt.in))
	for _, m := range bt.in {
		km, reason := b.convert(m.Topic(), m.Payload(), now, &arena)
		bt.out = append(bt.out, km)
		if reason == "" {
			bt.forwarded++
			continue
		}
		if bt.rejected == nil {
			bt.rejected = map[string]int{}
		}
		bt.rejected[reason]++
	}
}

// writeBatch writes a converted batch to Kafka, retrying until Kafka
// acknowledged every message or ctx ends.
func (b *Bridge) writeBatch(ctx context.Context, w *kafka.Writer, bt *chunk) error {
	b.m.unacked.Set(float64(len(bt.in)))
	b.m.batchSize.Observe(float64(len(bt.in)))
	start := time.Now()
	err := kafkax.WriteAll(ctx, w, bt.out, b.log, "writing batch to kafka", func(error) {
		b.kafkaUp.Store(false)
		b.m.kafkaWrites.WithLabelValues("error").Inc()
	})
	if err != nil {
		return err
	}
	b.m.writeSecs.Observe(time.Since(start).Seconds())
	b.kafkaUp.Store(true)
	b.m.kafkaWrites.WithLabelValues("ok").Inc()
	b.m.messages.WithLabelValues("forwarded").Add(float64(bt.forwarded))
	rejected := 0
	for reason, n := range bt.rejected {
		b.m.rejected.WithLabelValues(reason).Add(float64(n))
		rejected += n
	}
	b.m.messages.WithLabelValues("rejected").Add(float64(rejected))
	return nil
}

// convert turns one MQTT message into its Kafka message: a normalized
// reading, or a dead letter with the rejection reason (returned).
// Key and value are appended to *arena (nil: a buffer of their own); the
// message's slices stay valid when the arena grows, as nothing rewrites them.
func (b *Bridge) convert(topic string, payload []byte, received time.Time, arena *[]byte) (kafka.Message, string) {
	site, device, err := b.topics.ParseTelemetry(topic)
	var r sensor.Reading
	if err == nil {
		r, err = b.decoder.Decode(site, device, payload, received)
	}
	if err == nil {
		if arena == nil {
			arena = new([]byte)
		}
		start := len(*arena)
		*arena = append(*arena, r.DeviceID...)
		keyEnd := len(*arena)
		*arena = r.AppendJSON(*arena)
		buf := *arena
		return kafka.Message{
			Topic: b.cfg.Kafka.ReadingsTopic,
			Key:   buf[start:keyEnd:keyEnd],
			Value: buf[keyEnd:len(buf):len(buf)],
		}, ""
	}
	rej := sensor.RejectionOf(err)
	var key []byte
	if device != "" {
		key = []byte(device)
	}
	return kafkax.DeadLetter(b.cfg.Kafka.DeadLetterTopic, key, topic, payload, rej, received), rej.Reason
}

// noStore is a paho Store that keeps nothing. The bridge's client only
// subscribes: what it has not acknowledged, the broker redelivers after a
// reconnect, and it re-subscribes on every connect.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}
