// Package sink stores processed batches. Every store sits behind the one Sink
// interface and passes the same contract suite (sinktest) against its real
// server, so the processor treats them alike: it writes a batch to every
// enabled sink and commits the Kafka offsets only once all of them succeeded.
package sink

import (
	"context"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Batch is what one processor iteration stores: the readings it consumed and
// the alert events they raised. Sinks must not retain it after Write returns.
type Batch struct {
	Readings []sensor.Reading
	Alerts   []sensor.Alert
	// Scores, when set, holds the anomaly score in [0,1] of every metric of
	// every reading: in reading order and, within a reading, in metric-name
	// order (the order of Reading.MetricNames).
	Scores []float64
}

// Len is the number of records in the batch.
func (b Batch) Len() int { return len(b.Readings) + len(b.Alerts) }

// Sink persists a batch. Write is safe for concurrent use and does not retain
// b. Writing the same batch twice leaves the store as after one write (sinks
// are idempotent), so the processor may redeliver after a crash. Write
// returns an error when any part of the batch is not durably stored.
type Sink interface {
	Write(ctx context.Context, b Batch) error
	Close() error
}
