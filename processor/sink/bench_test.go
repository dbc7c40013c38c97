package sink_test

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/processor/sink/sinktest"
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

// benchReadings returns n single-metric readings of 100 devices; offset
// keeps rounds apart.
func benchReadings(n, offset int, start time.Time) []sensor.Reading {
	out := make([]sensor.Reading, n)
	for i := range out {
		k := offset + i
		out[i] = sensor.Reading{DeviceID: fmt.Sprintf("dev-%05d", k%100), Site: "site-0",
			TS: start.Add(time.Duration(k) * time.Millisecond), Seq: int64(k), Metrics: map[string]float64{"temperature": float64(k)}}
	}
	return out
}

// sinkRows writes the readings through the sink in batches of 2,000 and
// returns rows/s.
func sinkRows(b *testing.B, s *sink.Cassandra, readings []sensor.Reading) float64 {
	const per = 2000
	var batches []sink.Batch
	for done := 0; done < len(readings); done += per {
		batches = append(batches, sink.Batch{Readings: readings[done:min(done+per, len(readings))]})
	}
	began := time.Now()
	for _, batch := range batches {
		require.NoError(b, s.Write(context.Background(), batch))
	}
	return float64(len(readings)) / time.Since(began).Seconds()
}

// plainRows is the ceiling: the same rows through sinktest.PlainInserts.
func plainRows(b *testing.B, sess *gocql.Session, concurrency int, readings []sensor.Reading, ttl int) float64 {
	rows, err := sinktest.PlainInserts(context.Background(), sess, concurrency, readings, ttl)
	require.NoError(b, err)
	return rows
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
	ttl := int(cfg.TTL.Seconds())
	plainRows(b, sess, cfg.Concurrency, benchReadings(20000, offset, start.Add(-30*time.Minute)), ttl) // warm-up
	sinkRows(b, s, benchReadings(20000, offset, start.Add(-20*time.Minute)))
	var sinks, plains []float64
	b.ResetTimer()
	for range 3 {
		offset += n
		sinks = append(sinks, sinkRows(b, s, benchReadings(n, offset, start)))
		offset += n
		plains = append(plains, plainRows(b, sess, cfg.Concurrency, benchReadings(n, offset, start), ttl))
	}
	b.StopTimer()
	sort.Float64s(sinks)
	sort.Float64s(plains)
	b.ReportMetric(sinks[1], "sink-rows/s")
	b.ReportMetric(plains[1], "plain-rows/s")
	b.ReportMetric(sinks[1]/plains[1], "ratio")
	b.ReportMetric(0, "ns/op")
}
