package bridge

import (
	"context"
	"errors"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/retry"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// mirrorAlerts republishes every alert from Kafka on the device's MQTT
// alerts topic (QoS 1) and commits each once the broker acknowledged it.
func (b *Bridge) mirrorAlerts(ctx context.Context) error {
	opts, err := b.cfg.MQTT.Options(b.cfg.ClientID+"-alerts", true)
	if err != nil {
		return err
	}
	cl := mqtt.NewClient(opts)
	t := cl.Connect()
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return err
		}
	case <-ctx.Done():
		cl.Disconnect(0)
		return nil
	}
	defer cl.Disconnect(250)

	dialer, err := b.cfg.Kafka.Dialer()
	if err != nil {
		return err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        b.cfg.Kafka.BrokerList(),
		GroupID:        b.cfg.AlertsGroup,
		Topic:          b.cfg.Kafka.AlertsTopic,
		Dialer:         dialer,
		StartOffset:    kafka.FirstOffset,
		MaxWait:        100 * time.Millisecond, // idle polls only: a fetch returns as soon as an alert is there
		CommitInterval: time.Second,
		// A crashed member's partitions wait this long for a new owner.
		SessionTimeout:    b.cfg.Kafka.SessionTimeout,
		HeartbeatInterval: min(3*time.Second, b.cfg.Kafka.SessionTimeout/3),
	})
	defer r.Close()
	// Kafka may hold an alert event twice (a producer retry after a lost
	// acknowledgement): edge subscribers get each (alert, state) once.
	seen := newRecent(1 << 16)
	for {
		m, err := kafkax.Fetch(ctx, r, b.log, "reading alerts from kafka", nil)
		if err != nil {
			return nil // ctx ended: Fetch retries everything else
		}
		a, err := sensor.ParseAlert(m.Value)
		if err != nil {
			b.m.alerts.WithLabelValues("invalid").Inc()
			b.log.Warn("skipping invalid alert", "partition", m.Partition, "offset", m.Offset, "err", err)
		} else if !seen.add(a.AlertID + " " + a.State) {
			b.m.alerts.WithLabelValues("duplicate").Inc()
		} else {
			topic := b.topics.Alerts(a.Site, a.DeviceID)
			err := retry.Default.Forever(ctx, b.log, "publishing alert to mqtt", func() error {
				return mqttx.Wait(cl.Publish(topic, 1, false, m.Value), 10*time.Second)
			}, func(error) { b.m.alerts.WithLabelValues("error").Inc() })
			if err != nil {
				return nil // ctx ended; the alert is redelivered to the group
			}
			b.m.alerts.WithLabelValues("published").Inc()
		}
		if err := r.CommitMessages(ctx, m); err != nil && !errors.Is(err, context.Canceled) {
			// Published already; after a restart it is read again and
			// published once more.
			b.log.Warn("committing the alert offset failed", "partition", m.Partition, "offset", m.Offset, "err", err)
		}
	}
}

// recent remembers the last n keys added.
type recent struct {
	keys map[string]struct{}
	ring []string
	next int
}

func newRecent(n int) *recent {
	return &recent{keys: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add records key and reports whether it was new.
func (r *recent) add(key string) bool {
	if _, ok := r.keys[key]; ok {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.keys, old)
	}
	r.ring[r.next] = key
	r.keys[key] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
	return true
}
