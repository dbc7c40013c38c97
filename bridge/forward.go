package bridge

import (
	"context"
	"fmt"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// maxDeadLetterPayload bounds the copy of a rejected payload kept in the
// dead-letter topic, below Kafka's default 1 MB message limit.
const maxDeadLetterPayload = 256 << 10

// forward runs the MQTT → Kafka path until ctx ends.
func (b *Bridge) forward(ctx context.Context) error {
	q := make(chan mqtt.Message, b.cfg.QueueSize)
	enqueue := func(_ mqtt.Client, m mqtt.Message) {
		// Never blocks in steady state: the queue is larger than the
		// broker's in-flight window, and nothing is acknowledged (so the
		// window does not move) until the writer drained the queue.
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
	// With a persistent session the broker may deliver before Subscribe
	// returns: route such messages to the same queue.
	opts.SetDefaultPublishHandler(enqueue)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		b.m.connected.Set(1)
		b.m.connects.Inc()
		t := c.Subscribe(filter, 1, enqueue)
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

	w, err := b.cfg.Kafka.Writer(b.cfg.BatchSize, b.cfg.Linger)
	if err != nil {
		return err
	}
	defer w.Close()

	// Writes outlive ctx by DrainTimeout so the batch in hand can finish.
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(b.cfg.DrainTimeout, cancelDrain) })
	defer stop()

	batch := make([]mqtt.Message, 0, b.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		batch = batch[:0]
		select {
		case m := <-q:
			batch = append(batch, m)
		case <-ctx.Done():
			return nil
		}
		timer.Reset(b.cfg.Linger)
	fill:
		for len(batch) < cap(batch) {
			select {
			case m := <-q:
				batch = append(batch, m)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		b.m.queue.Set(float64(len(q)))
		if err := b.writeBatch(drainCtx, w, batch); err != nil {
			// Only a drain deadline gets here: leave the batch
			// unacknowledged for the broker to redeliver.
			b.log.Warn("batch left unacknowledged at shutdown", "messages", len(batch), "err", err)
			return nil
		}
		// MQTT 3.1.1 wants PUBACKs in arrival order: ack from the head.
		for _, m := range batch {
			m.Ack()
		}
		b.m.unacked.Set(0)
	}
}

// writeBatch converts a batch and writes it to Kafka, retrying until Kafka
// acknowledged every message or ctx ends.
func (b *Bridge) writeBatch(ctx context.Context, w *kafka.Writer, batch []mqtt.Message) error {
	b.m.unacked.Set(float64(len(batch)))
	b.m.batchSize.Observe(float64(len(batch)))
	msgs := make([]kafka.Message, 0, len(batch))
	forwarded, rejected := 0, 0
	now := time.Now()
	for _, m := range batch {
		km, reason := b.convert(m.Topic(), m.Payload(), now)
		msgs = append(msgs, km)
		if reason == "" {
			forwarded++
		} else {
			rejected++
			b.m.rejected.WithLabelValues(reason).Inc()
		}
	}
	start := time.Now()
	err := kafkax.WriteAll(ctx, w, msgs, b.log, "writing batch to kafka", func(error) {
		b.kafkaUp.Store(false)
		b.m.kafkaWrites.WithLabelValues("error").Inc()
	})
	if err == nil {
		b.m.writeSecs.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return err
	}
	b.kafkaUp.Store(true)
	b.m.kafkaWrites.WithLabelValues("ok").Inc()
	b.m.messages.WithLabelValues("forwarded").Add(float64(forwarded))
	b.m.messages.WithLabelValues("rejected").Add(float64(rejected))
	return nil
}

// convert turns one MQTT message into its Kafka message: a normalized
// reading, or a dead letter with the rejection reason (returned).
func (b *Bridge) convert(topic string, payload []byte, received time.Time) (kafka.Message, string) {
	site, device, err := b.topics.ParseTelemetry(topic)
	var r sensor.Reading
	if err == nil {
		r, err = b.decoder.Decode(site, device, payload, received)
	}
	if err == nil {
		return kafka.Message{
			Topic: b.cfg.Kafka.ReadingsTopic,
			Key:   []byte(r.DeviceID),
			Value: r.AppendJSON(make([]byte, 0, 160)),
		}, ""
	}
	rej, ok := sensor.AsRejection(err)
	if !ok {
		rej = &sensor.Rejection{Reason: sensor.ReasonInvalidJSON, Detail: err.Error()}
	}
	return deadLetter(b.cfg.Kafka.DeadLetterTopic, topic, device, payload, rej, received), rej.Reason
}

// deadLetter builds the dead-letter message for a rejected payload: the
// payload itself (cut at 256 KiB), with headers reason, detail, source_topic,
// received_at, original_size and, if cut, truncated.
func deadLetter(topic, source, device string, payload []byte, rej *sensor.Rejection, received time.Time) kafka.Message {
	if len(source) > 1024 {
		source = source[:1024]
	}
	headers := []kafka.Header{
		{Key: "reason", Value: []byte(rej.Reason)},
		{Key: "detail", Value: []byte(rej.Detail)},
		{Key: "source_topic", Value: []byte(source)},
		{Key: "received_at", Value: []byte(received.UTC().Format(time.RFC3339Nano))},
		{Key: "original_size", Value: []byte(strconv.Itoa(len(payload)))},
	}
	if len(payload) > maxDeadLetterPayload {
		payload = payload[:maxDeadLetterPayload]
		headers = append(headers, kafka.Header{Key: "truncated", Value: []byte("true")})
	}
	var key []byte
	if device != "" {
		key = []byte(device)
	}
	return kafka.Message{Topic: topic, Key: key, Value: payload, Headers: headers}
}
