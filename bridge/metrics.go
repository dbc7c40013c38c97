package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

type metrics struct {
	messages    *prometheus.CounterVec // result: forwarded, rejected
	rejected    *prometheus.CounterVec // reason
	kafkaWrites *prometheus.CounterVec // result: ok, error
	writeSecs   prometheus.Histogram
	batchSize   prometheus.Histogram
	queue       prometheus.Gauge
	unacked     prometheus.Gauge
	connected   prometheus.Gauge
	connects    prometheus.Counter
	alerts      *prometheus.CounterVec // result: published, invalid, error
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_bridge_messages_total", Help: "MQTT telemetry messages handled, by result (forwarded to the readings topic, or rejected to the dead-letter topic).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_bridge_rejected_total", Help: "Telemetry messages sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		kafkaWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_bridge_kafka_writes_total", Help: "Batch writes to Kafka, by result.",
		}, []string{"result"}),
		writeSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sensorflow_bridge_kafka_write_seconds", Help: "Latency of successful batch writes to Kafka (acks=all).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sensorflow_bridge_batch_messages", Help: "Messages per Kafka batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_bridge_queue_messages", Help: "Messages received from MQTT and waiting for the Kafka writer.",
		}),
		unacked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_bridge_unacked_messages", Help: "Messages in the batch being written, not yet acknowledged to MQTT.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_bridge_mqtt_connected", Help: "1 while the bridge is connected to the MQTT broker.",
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sensorflow_bridge_mqtt_connects_total", Help: "MQTT connections established (the first and every reconnect).",
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_bridge_alerts_total", Help: "Alerts mirrored from Kafka to MQTT, by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.messages, m.rejected, m.kafkaWrites, m.writeSecs, m.batchSize, m.queue, m.unacked, m.connected, m.connects, m.alerts)
	for _, r := range []string{"forwarded", "rejected"} {
		m.messages.WithLabelValues(r)
	}
	for _, r := range sensor.Reasons {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.kafkaWrites.WithLabelValues(r)
	}
	for _, r := range []string{"published", "invalid", "duplicate", "error"} {
		m.alerts.WithLabelValues(r)
	}
	return m
}
