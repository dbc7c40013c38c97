package sink_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/processor/sink/sinktest"
)

func TestInfluxContract(t *testing.T) {
	u, token, bucket := testenv.Influx(t)
	var cfg sink.InfluxConfig
	fs := flag.NewFlagSet("", flag.PanicOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(nil)
	cfg.URL, cfg.Token, cfg.Bucket, cfg.BatchLines = u, token, bucket, 100
	cfg.Timeout = 5 * time.Second
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	client := influxdb2.NewClient(u, token)
	defer client.Close()
	query := func(t *testing.T, flux string) []map[string]any {
		res, err := client.QueryAPI(cfg.Org).Query(context.Background(), flux)
		require.NoError(t, err)
		defer res.Close()
		var rows []map[string]any
		for res.Next() {
			rows = append(rows, res.Record().Values())
		}
		require.NoError(t, res.Err())
		return rows
	}
	sinktest.Run(t, sinktest.Harness{
		Target:      parsed.Host,
		RequestSize: cfg.BatchLines,
		New: func(t *testing.T, p *sinktest.Proxy) sink.Sink {
			c := cfg
			if p != nil {
				c.URL = "http://" + p.Addr()
			}
			s, err := sink.NewInflux(c)
			require.NoError(t, err)
			return s
		},
		Readings: func(t *testing.T, device, metric string, from, to time.Time) map[int64]float64 {
			rows := query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "readings" and r.device_id == %q and r._field == %q)`,
				bucket, from.Format(time.RFC3339Nano), to.Add(time.Second).Format(time.RFC3339Nano), device, metric))
			out := map[int64]float64{}
			for _, r := range rows {
				out[r["_time"].(time.Time).UnixNano()] = r["_value"].(float64)
			}
			return out
		},
		Alerts: func(t *testing.T, device string) map[string]string {
			rows := query(t, fmt.Sprintf(`from(bucket: %q) |> range(start: -30d)
  |> filter(fn: (r) => r._measurement == "alerts" and r.device_id == %q and (r._field == "alert_id" or r._field == "state"))
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"])`, bucket, device))
			out := map[string]string{}
			for _, r := range rows {
				out[r["alert_id"].(string)] = r["state"].(string)
			}
			return out
		},
	})
}

func TestCassandraContract(t *testing.T) {
	hosts := testenv.Cassandra(t)
	var cfg sink.CassandraConfig
	fs := flag.NewFlagSet("", flag.PanicOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(nil)
	cfg.Hosts = hosts
	cfg.Keyspace = testenv.Unique("sinktest_")
	cfg.Timeout = 5 * time.Second
	target := strings.Split(hosts, ",")[0]
	if _, _, err := net.SplitHostPort(target); err != nil {
		target = net.JoinHostPort(target, "9042")
	}
	require.NoError(t, cfg.ApplySchemaNow(context.Background()))
	cl, err := cfg.Cluster(cfg.Keyspace)
	require.NoError(t, err)
	sess, err := cl.CreateSession()
	require.NoError(t, err)
	defer sess.Close()
	t.Cleanup(func() { _ = sess.Query(`DROP KEYSPACE IF EXISTS ` + cfg.Keyspace).Exec() })

	sinktest.Run(t, sinktest.Harness{
		Target:      target,
		RequestSize: cfg.Concurrency,
		New: func(t *testing.T, p *sinktest.Proxy) sink.Sink {
			c := cfg
			c.ApplySchema = false
			if p != nil {
				c.Hosts = p.Addr()
				host, port, _ := net.SplitHostPort(p.Addr())
				pn := 0
				fmt.Sscan(port, &pn)
				c.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) {
					return net.ParseIP(host), pn
				})
			}
			s, err := sink.NewCassandra(context.Background(), c)
			require.NoError(t, err)
			return s
		},
		Readings: func(t *testing.T, device, metric string, from, to time.Time) map[int64]float64 {
			out := map[int64]float64{}
			for day := from.UTC().Truncate(24 * time.Hour); !day.After(to); day = day.Add(24 * time.Hour) {
				iter := sess.Query(`SELECT ts, value FROM readings WHERE device_id = ? AND metric = ? AND day = ? AND ts >= ? AND ts <= ?`,
					device, metric, day, from, to).Iter()
				var ts time.Time
				var v float64
				for iter.Scan(&ts, &v) {
					out[ts.UnixNano()] = v
				}
				require.NoError(t, iter.Close())
			}
			return out
		},
		Alerts: func(t *testing.T, device string) map[string]string {
			out := map[string]string{}
			iter := sess.Query(`SELECT alert_id, state FROM alerts_by_device WHERE device_id = ?`, device).Iter()
			var id, state string
			for iter.Scan(&id, &state) {
				out[id] = state
			}
			require.NoError(t, iter.Close())
			return out
		},
	})
}

// The devices table keeps the earliest first_seen whatever order batches
// arrive in, last_seen within a minute, and the union of metric names.
func TestCassandraDevicesTable(t *testing.T) {
	hosts := testenv.Cassandra(t)
	var cfg sink.CassandraConfig
	fs := flag.NewFlagSet("", flag.PanicOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(nil)
	cfg.Hosts, cfg.Keyspace = hosts, testenv.Unique("devices_")
	s, err := sink.NewCassandra(context.Background(), cfg)
	require.NoError(t, err)
	defer s.Close()
	defer s.Session().Query(`DROP KEYSPACE IF EXISTS ` + cfg.Keyspace).Exec() //nolint:errcheck
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	reading := func(at time.Duration, metric string) sensor.Reading {
		return sensor.Reading{DeviceID: "d1", Site: "s1", TS: t0.Add(at), Metrics: map[string]float64{metric: 1}}
	}
	for _, b := range []sink.Batch{
		{Readings: []sensor.Reading{reading(10*time.Minute, "a")}},
		{Readings: []sensor.Reading{reading(0, "b")}},                             // earlier, out of order
		{Readings: []sensor.Reading{reading(30*time.Second+10*time.Minute, "a")}}, // under a minute later
		{Readings: []sensor.Reading{reading(20*time.Minute, "a"), reading(21*time.Minute, "c")}},
	} {
		require.NoError(t, s.Write(context.Background(), b))
	}
	var first, last time.Time
	var metrics []string
	require.NoError(t, s.Session().Query(`SELECT first_seen, last_seen, metrics FROM devices WHERE device_id = ?`, "d1").Scan(&first, &last, &metrics))
	require.Equal(t, t0, first.UTC())
	require.Equal(t, t0.Add(21*time.Minute), last.UTC())
	require.ElementsMatch(t, []string{"a", "b", "c"}, metrics)
}
