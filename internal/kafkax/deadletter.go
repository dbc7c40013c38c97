package kafkax

import (
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Headers of a dead letter, declared once for every stage that writes one
// and every tool that reads one.
const (
	HeaderReason       = "reason"        // sensor.Reason* constant
	HeaderDetail       = "detail"        // human-readable cause
	HeaderSourceTopic  = "source_topic"  // MQTT or Kafka topic the payload came from (cut at 1 KiB)
	HeaderReceivedAt   = "received_at"   // RFC 3339, when the stage received it
	HeaderOriginalSize = "original_size" // payload bytes before any cut
	HeaderTruncated    = "truncated"     // "true" when the payload was cut
)

// MaxDeadLetterPayload bounds the copy of a rejected payload kept in the
// dead-letter topic, below Kafka's default 1 MB message limit.
const MaxDeadLetterPayload = 256 << 10

const maxSourceTopic = 1024

// DeadLetter builds the message that carries a rejected payload to the
// dead-letter topic: the payload itself (cut at MaxDeadLetterPayload) keyed
// by key (nil when the device is unknown), with the rejection in headers.
// It does not retain payload's later changes: callers pass a payload they
// no longer write to.
func DeadLetter(topic string, key []byte, source string, payload []byte, rej *sensor.Rejection, received time.Time) kafka.Message {
	if len(source) > maxSourceTopic {
		source = source[:maxSourceTopic]
	}
	headers := make([]kafka.Header, 0, 6)
	headers = append(headers,
		kafka.Header{Key: HeaderReason, Value: []byte(rej.Reason)},
		kafka.Header{Key: HeaderDetail, Value: []byte(rej.Detail)},
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(source)},
		kafka.Header{Key: HeaderReceivedAt, Value: []byte(received.UTC().Format(time.RFC3339Nano))},
		kafka.Header{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(len(payload)))},
	)
	if len(payload) > MaxDeadLetterPayload {
		payload = payload[:MaxDeadLetterPayload]
		headers = append(headers, kafka.Header{Key: HeaderTruncated, Value: []byte("true")})
	}
	return kafka.Message{Topic: topic, Key: key, Value: payload, Headers: headers}
}

// HeaderMap returns m's headers by name (the last of repeated names wins),
// for tools and tests that read dead letters.
func HeaderMap(m kafka.Message) map[string]string {
	out := make(map[string]string, len(m.Headers))
	for _, h := range m.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}
