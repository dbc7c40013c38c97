package sink_test

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// benchKeyspace creates a fresh keyspace for one benchmark and returns its
// config; the keyspace is dropped at the end.
func benchKeyspace(b *testing.B) sink.CassandraConfig {
	var cfg sink.CassandraConfig
	fs := flag.NewFlagSet("", flag.PanicOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(nil)
	cfg.Hosts = testenv.Cassandra(b)
	cfg.Keyspace = testenv.Unique("bench_")
	require.NoError(b, cfg.ApplySchemaNow(context.Background()))
	b.Cleanup(func() {
		if cl, err := cfg.Cluster(""); err == nil {
			if s, err := cl.CreateSession(); err == nil {
				_ = s.Query(`DROP KEYSPACE IF EXISTS ` + cfg.Keyspace).Exec()
				s.Close()
			}
		}
	})
	return cfg
}

// sinkRows writes n single-metric readings of 100 devices through the sink
// in batches of 2,000 and returns rows/s. offset keeps rounds apart.
func sinkRows(b *testing.B, s *sink.Cassandra, n, offset int, start time.Time) float64 {
	const per = 2000
	batches := make([]sink.Batch, 0, n/per+1)
	for done := 0; done < n; done += per {
		batch := sink.Batch{Readings: make([]sensor.Reading, min(per, n-done))}
		for i := range batch.Readings {
			k := offset + done + i
			batch.Readings[i] = sensor.Reading{DeviceID: fmt.Sprintf("dev-%05d", k%100), Site: "site-0",
				TS: start.Add(time.Duration(k) * time.Millisecond), Seq: int64(k), Metrics: map[string]float64{"temperature": float64(k)}}
		}
		batches = append(batches, batch)
	}
	began := time.Now()
	for _, batch := range batches {
		require.NoError(b, s.Write(context.Background(), batch))
	}
	return float64(n) / time.Since(began).Seconds()
}

// plainRows is the ceiling: the same rows through the same prepared INSERT
// with the same concurrency, no Sensorflow code. Returns rows/s.
func plainRows(b *testing.B, sess *gocql.Session, concurrency, n, offset int, start time.Time) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				k += offset
				ts := start.Add(time.Duration(k) * time.Millisecond)
				err := sess.Query(sink.CQLInsertReading,
					fmt.Sprintf("dev-%05d", k%100), "temperature", ts.Truncate(24*time.Hour), ts, float64(k), "site-0", int64(k), 2592000).Idempotent(true).Exec()
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(began).Seconds()
}

// BenchmarkCassandraSinkVsPlain reports the Cassandra sink's rows/s, the
// plain gocql loop's rows/s on the same server in the same run, and their
// ratio (target ≥ 0.9). After a warm-up, rounds alternate so JVM warm-up
// and background compaction hit both alike; medians are reported. b.N is
// the rows per round.
func BenchmarkCassandraSinkVsPlain(b *testing.B) {
	cfg := benchKeyspace(b)
	cfg.ApplySchema = false
	s, err := sink.NewCassandra(context.Background(), cfg)
	require.NoError(b, err)
	defer s.Close()
	cl, err := cfg.Cluster(cfg.Keyspace)
	require.NoError(b, err)
	sess, err := cl.CreateSession()
	require.NoError(b, err)
	defer sess.Close()
	start := time.Now().Add(-time.Hour).UTC()
	n := max(b.N, 2000)
	offset := 0
	plainRows(b, sess, cfg.Concurrency, 20000, offset, start.Add(-30*time.Minute)) // warm-up
	sinkRows(b, s, 20000, offset, start.Add(-20*time.Minute))
	var sinks, plains []float64
	b.ResetTimer()
	for range 3 {
		offset += n
		sinks = append(sinks, sinkRows(b, s, n, offset, start))
		offset += n
		plains = append(plains, plainRows(b, sess, cfg.Concurrency, n, offset, start))
	}
	b.StopTimer()
	sort.Float64s(sinks)
	sort.Float64s(plains)
	b.ReportMetric(sinks[1], "sink-rows/s")
	b.ReportMetric(plains[1], "plain-rows/s")
	b.ReportMetric(sinks[1]/plains[1], "ratio")
	b.ReportMetric(0, "ns/op")
}
