package sinktest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// PlainInserts is the Cassandra sink's ceiling in benchmarks: one row per
// metric of each reading through the sink's own prepared INSERT
// (sink.CQLInsertReading), from concurrency goroutines, with no Sensorflow
// code in between. It returns rows/s, or the first error.
func PlainInserts(ctx context.Context, sess *gocql.Session, concurrency int, readings []sensor.Reading, ttl int) (float64, error) {
	type row struct {
		r      *sensor.Reading
		metric string
		v      float64
	}
	var rows []row
	for i := range readings {
		for m, v := range readings[i].Metrics {
			rows = append(rows, row{&readings[i], m, v})
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	began := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(rows) || ctx.Err() != nil {
					return
				}
				r := rows[i]
				err := sess.Query(sink.CQLInsertReading,
					r.r.DeviceID, r.metric, r.r.TS.Truncate(24*time.Hour), r.r.TS, r.v, r.r.Site, r.r.Seq, ttl).Idempotent(true).Exec()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(len(rows)) / time.Since(began).Seconds(), nil
}
