package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gocql/gocql"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/simulator"
)

// row is one scenario's outcome.
type row struct {
	scenario, what              string
	published, acked            int64
	inInflux, inCassandra       int64
	lostInflux, lostCassandra   int64
	unacked                     int64          // stored although not acknowledged (the PUBACK was lost)
	dupRows                     int64          // rows beyond one per (device, ts), over both stores
	redelivered                 int64          // readings-topic messages beyond one per (device, ts)
	alerts, dupAlerts           int64          // alert events on Kafka, and those Kafka holds twice
	alertsMissing, dupAlertRows int64          // opened alerts absent from Cassandra, or there twice
	opened                      map[string]int // alerts opened on Kafka, by kind
	faultGaps                   int            // gap alerts opened on Kafka that no injected dropout explains
	reorderGaps                 int            // gap alerts that readings reordered across bridges explain
	siteIncidents               map[string]int // incidents opened on Kafka, by site
	// device alert events an uninterrupted detector raises over the
	// readings topic, those of them the processors did not raise, and
	// those they raised beyond them (sameAlerts scenarios)
	alertsExpected, alertsMissed, alertsExtra int
	recovery                                  time.Duration
	storedAt                                  time.Time // when both stores first held every acknowledged reading
	peakBridge, peakProcessor                 int64
	err, failed                               string
}

// verdict is empty when the scenario kept its promises.
func (r *row) verdict(sc scenario, cfg config) string {
	var bad []string
	if r.err != "" {
		bad = append(bad, r.err)
	}
	if r.acked == 0 && r.err == "" {
		bad = append(bad, "nothing was acknowledged")
	}
	if r.lostInflux+r.lostCassandra > 0 {
		bad = append(bad, fmt.Sprintf("%d acknowledged readings missing from InfluxDB, %d from Cassandra", r.lostInflux, r.lostCassandra))
	}
	if r.dupRows > 0 {
		bad = append(bad, fmt.Sprintf("%d duplicate rows", r.dupRows))
	}
	if r.alertsMissing > 0 || r.dupAlertRows > 0 {
		bad = append(bad, fmt.Sprintf("%d alerts missing from Cassandra, %d stored twice", r.alertsMissing, r.dupAlertRows))
	}
	if sc.grouped {
		if r.faultGaps > 0 {
			bad = append(bad, fmt.Sprintf("%d device gap alerts published that no injected dropout explains: an outage must be one incident per site", r.faultGaps))
		}
		for site, n := range r.siteIncidents {
			if n > 1 {
				bad = append(bad, fmt.Sprintf("%d incidents for site %s, at most one", n, site))
			}
		}
	}
	if sc.sameAlerts && r.alertsMissed+r.alertsExtra > 0 {
		bad = append(bad, fmt.Sprintf("device alerts differ from an uninterrupted detector's over the same readings: %d of %d missed, %d extra", r.alertsMissed, r.alertsExpected, r.alertsExtra))
	}
	if sc.memory {
		if r.peakBridge > cfg.memBudget<<20 || r.peakProcessor > cfg.memBudget<<20 {
			bad = append(bad, fmt.Sprintf("peak RSS bridge %d MiB, processor %d MiB, over the %d MiB budget", r.peakBridge>>20, r.peakProcessor>>20, cfg.memBudget))
		}
	}
	return strings.Join(bad, "; ")
}

type key struct {
	device string
	ts     int64 // Unix milliseconds: Cassandra's precision
}

// verify waits until both stores hold every acknowledged reading (or the
// settle time passed), then compares them with the acknowledgement log
// reading by reading.
func (r *run) verify(ctx context.Context, res *row) error {
	acked, err := readAckLog(filepath.Join(r.dir, "acks.log"))
	if err != nil {
		return err
	}
	res.acked = int64(len(acked))
	prefix := r.id + "-dev-"
	settle := r.f.cfg.settle
	if r.memory {
		settle = r.f.cfg.bpSettle
	}
	deadline := time.Now().Add(settle)
	var inf, cas map[key]int
	for {
		inf, err = r.f.influxRows(ctx, prefix)
		if err != nil {
			r.f.log.Warn("reading InfluxDB", "err", err)
		}
		cas, err = r.f.cassandraRows(r.keyspace, acked)
		if err != nil {
			r.f.log.Warn("reading Cassandra", "err", err)
		}
		if covers(inf, acked) && covers(cas, acked) {
			res.storedAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
	for k := range acked {
		if inf[k] == 0 {
			res.lostInflux++
		}
		if cas[k] == 0 {
			res.lostCassandra++
		}
	}
	for _, m := range []map[key]int{inf, cas} {
		for _, n := range m {
			if n > 1 {
				res.dupRows += int64(n - 1)
			}
		}
	}
	for k := range inf {
		if !acked[k] {
			res.unacked++
		}
	}
	res.inInflux, res.inCassandra = int64(len(inf)), int64(len(cas))

	readings, err := r.f.readTopic(ctx, r.id+".readings")
	if err != nil {
		return err
	}
	seen := map[key]bool{}
	var late lateReadings
	for _, m := range readings {
		var v struct {
			DeviceID string    `json:"device_id"`
			TS       time.Time `json:"ts"`
		}
		if json.Unmarshal(m.Value, &v) != nil || !strings.HasPrefix(v.DeviceID, prefix) {
			continue
		}
		k := key{v.DeviceID, v.TS.UnixMilli()}
		if seen[k] {
			res.redelivered++
		} else {
			late.add(v.DeviceID, v.TS)
		}
		seen[k] = true
	}
	// Gap alerts wait up to -incidents.hold in the incidents stage before
	// they are published alone: read the alerts topic once none is held.
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if n, err := r.processor.Metric("sensorflow_processor_alerts_held", nil); err == nil && n == 0 {
			break
		}
	}
	alerts, err := r.f.readTopic(ctx, r.id+".alerts")
	if err != nil {
		return err
	}
	if r.sameAlerts {
		if err := r.compareAlerts(ctx, res, readings); err != nil {
			return err
		}
	}
	res.opened, res.siteIncidents = map[string]int{}, map[string]int{}
	dropouts, err := readDropouts(filepath.Join(r.dir, "truth.jsonl"))
	if err != nil {
		return err
	}
	events := map[string]kafka.Message{}
	var dups, gaps []string
	for _, m := range alerts {
		var a struct {
			ID      string    `json:"alert_id"`
			State   string    `json:"state"`
			Kind    string    `json:"kind"`
			Site    string    `json:"site"`
			Device  string    `json:"device_id"`
			Started time.Time `json:"started_at"`
		}
		if json.Unmarshal(m.Value, &a) != nil {
			continue
		}
		res.alerts++
		if _, dup := events[a.ID+" "+a.State]; !dup && a.State == "open" {
			res.opened[a.Kind]++
			switch {
			case a.Kind != "gap" || dropouts.explain(a.Device, a.Started):
			case late.explains(a.Device, a.Started):
				res.reorderGaps++
				gaps = append(gaps, "reordered: "+string(m.Value))
			default:
				res.faultGaps++
				gaps = append(gaps, string(m.Value))
			}
			if a.Device == sensor.SiteDevice {
				res.siteIncidents[a.Site]++
			}
		}
		if first, dup := events[a.ID+" "+a.State]; dup {
			res.dupAlerts++
			dups = append(dups, fmt.Sprintf("partition %d offset %d (%s) repeats offset %d (%s): %s",
				m.Partition, m.Offset, m.Time.Format(time.RFC3339Nano), first.Offset, first.Time.Format(time.RFC3339Nano), m.Value))
			continue
		}
		events[a.ID+" "+a.State] = m
	}
	if gaps != nil {
		_ = os.WriteFile(filepath.Join(r.dir, "fault-gap-alerts.txt"), []byte(strings.Join(gaps, "\n")+"\n"), 0o644)
	}
	if dups != nil {
		_ = os.WriteFile(filepath.Join(r.dir, "duplicate-alerts.txt"), []byte(strings.Join(dups, "\n")+"\n"), 0o644)
	}

	// Every alert the processor published is in Cassandra, once.
	ids := map[string]string{} // alert id → device
	for k, m := range events {
		if id, state, _ := strings.Cut(k, " "); state == "open" {
			var a struct {
				DeviceID string `json:"device_id"`
			}
			_ = json.Unmarshal(m.Value, &a)
			ids[id] = a.DeviceID
		}
	}
	stored, err := r.f.cassandraAlerts(r.keyspace, ids)
	if err != nil {
		return err
	}
	for id := range ids {
		switch n := stored[id]; {
		case n == 0:
			res.alertsMissing++
		case n > 1:
			res.dupAlertRows += int64(n - 1)
		}
	}
	return nil
}

func covers(stored map[key]int, acked map[key]bool) bool {
	for k := range acked {
		if stored[k] == 0 {
			return false
		}
	}
	return true
}

// readAckLog reads the simulator's 'device_id seq ts' lines.
func readAckLog(path string) (map[key]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[key]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			return nil, fmt.Errorf("%s: malformed line %q", path, sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, fs[2])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out[key{fs[0], ts.UnixMilli()}] = true
	}
	return out, sc.Err()
}

func (f *faults) influxClient() influxdb2.Client {
	return influxdb2.NewClient(f.srv.InfluxURL, f.srv.InfluxToken)
}

// influxRows returns the temperature points of every device under prefix.
func (f *faults) influxRows(ctx context.Context, prefix string) (map[key]int, error) {
	cl := f.influxClient()
	defer cl.Close()
	q := fmt.Sprintf(`import "strings"
from(bucket: %q)
  |> range(start: -1d, stop: 1d)
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and strings.hasPrefix(v: r.device_id, prefix: %q))
  |> keep(columns: ["_time", "device_id"])`, f.srv.InfluxBucket, prefix)
	res, err := cl.QueryAPI("sensorflow").Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out := map[key]int{}
	for res.Next() {
		dev, _ := res.Record().ValueByKey("device_id").(string)
		out[key{dev, res.Record().Time().UnixMilli()}]++
	}
	return out, res.Err()
}

// influxHas reports whether a device's temperature point at ts is stored.
func (f *faults) influxHas(ctx context.Context, device string, ts time.Time) bool {
	cl := f.influxClient()
	defer cl.Close()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and r.device_id == %q) |> count()`,
		f.srv.InfluxBucket, ts.Format(time.RFC3339Nano), ts.Add(time.Millisecond).Format(time.RFC3339Nano), device)
	res, err := cl.QueryAPI("sensorflow").Query(ctx, q)
	if err != nil {
		return false
	}
	defer res.Close()
	return res.Next()
}

func (f *faults) cassandra(keyspace string) (*gocql.Session, error) {
	var c sink.CassandraConfig
	fs := flag.NewFlagSet("cassandra", flag.ContinueOnError)
	c.RegisterFlags(fs)
	_ = fs.Parse(nil)
	c.Hosts, c.Keyspace = f.srv.CassandraHosts, keyspace
	cl, err := c.Cluster(keyspace)
	if err != nil {
		return nil, err
	}
	return cl.CreateSession()
}

// cassandraAlerts counts the rows of alerts_by_device per alert id, over
// the devices of ids.
func (f *faults) cassandraAlerts(keyspace string, ids map[string]string) (map[string]int, error) {
	s, err := f.cassandra(keyspace)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	devices := map[string]bool{}
	for _, d := range ids {
		devices[d] = true
	}
	out := map[string]int{}
	for d := range devices {
		it := s.Query(`SELECT alert_id FROM alerts_by_device WHERE device_id = ?`, d).PageSize(5000).Iter()
		var id string
		for it.Scan(&id) {
			out[id]++
		}
		if err := it.Close(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// cassandraRows returns the temperature rows of the devices of acked, over
// the days they cover.
func (f *faults) cassandraRows(keyspace string, acked map[key]bool) (map[key]int, error) {
	s, err := f.cassandra(keyspace)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	days := map[string]map[time.Time]bool{}
	for k := range acked {
		if days[k.device] == nil {
			days[k.device] = map[time.Time]bool{}
		}
		days[k.device][time.UnixMilli(k.ts).UTC().Truncate(24*time.Hour)] = true
	}
	out := map[key]int{}
	for dev, ds := range days {
		for day := range ds {
			it := s.Query(`SELECT ts FROM readings WHERE device_id = ? AND metric = ? AND day = ?`, dev, "temperature", day).PageSize(5000).Iter()
			var ts time.Time
			for it.Scan(&ts) {
				out[key{dev, ts.UnixMilli()}]++
			}
			if err := it.Close(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func (f *faults) kafka() *kafkax.Config {
	return &kafkax.Config{Brokers: f.srv.KafkaBrokers}
}

func deleteTopics(id string) *kafka.DeleteTopicsRequest {
	return &kafka.DeleteTopicsRequest{Topics: []string{id + ".readings", id + ".alerts", id + ".alerts.raw", id + ".deadletter", id + ".detector-state"}}
}

// readTopic reads every message of a topic up to each partition's end.
func (f *faults) readTopic(ctx context.Context, topic string) ([]kafka.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	brokers := strings.Split(f.srv.KafkaBrokers, ",")
	cl := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("topic %s: %v", topic, md.Topics)
	}
	var out []kafka.Message
	for _, p := range md.Topics[0].Partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p.ID)
		if err != nil {
			return nil, err
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			return nil, err
		}
		if last == 0 {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxWait: 200 * time.Millisecond, MaxBytes: 16 << 20})
		for {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				rd.Close()
				return nil, err
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		rd.Close()
	}
	return out, nil
}

func (f *faults) print(w io.Writer) {
	fmt.Fprintf(w, "\nfault scenarios: %d devices every %s unless noted; lost = acknowledged but not stored; unacked = stored though the PUBACK never reached the device; redelivered = extra copies in Kafka, absorbed by idempotent writes; alerts = events on Kafka / events Kafka holds twice (producer retries; stored once, published once at the edge)\n\n", f.cfg.devices, f.cfg.interval)
	fmt.Fprintf(w, "%-18s %9s %9s %9s %9s %6s %6s %8s %6s %11s %11s %9s %9s  %s\n",
		"scenario", "published", "acked", "influx", "cassandra", "lost", "dups", "unacked", "redeliv", "alerts/dup", "recover", "RSS br", "RSS proc", "result")
	for _, r := range f.rows {
		result := "ok"
		if r.failed != "" {
			result = "FAILED: " + r.failed
		}
		fmt.Fprintf(w, "%-18s %9d %9d %9d %9d %6d %6d %8d %6d %11s %11s %8dM %8dM  %s\n",
			r.scenario, r.published, r.acked, r.inInflux, r.inCassandra, r.lostInflux+r.lostCassandra, r.dupRows+r.dupAlertRows,
			r.unacked, r.redelivered, fmt.Sprintf("%d/%d", r.alerts, r.dupAlerts), r.recovery.Round(10*time.Millisecond), r.peakBridge>>20, r.peakProcessor>>20, result)
	}
	fmt.Fprintln(w)
	for _, r := range f.rows {
		fmt.Fprintf(w, "  %-18s %s\n", r.scenario, r.what)
	}
	fmt.Fprintf(w, "\nalerts opened on the alerts topic, by kind (outage and site_wide: site incidents; the device alerts grouped into them are stored, not published)\n\n")
	for _, r := range f.rows {
		fmt.Fprintf(w, "  %-18s %s; gap alerts no injected dropout explains: %d, and %d that readings reordered across bridges explain\n", r.scenario, byKind(r.opened), r.faultGaps, r.reorderGaps)
	}
	fmt.Fprintf(w, "\ndevice alert events compared with one uninterrupted detector over the same readings (detector state restored from its checkpoints after the fault)\n\n")
	for _, r := range f.rows {
		if r.alertsExpected+r.alertsMissed+r.alertsExtra > 0 {
			fmt.Fprintf(w, "  %-18s expected %d, missed %d, extra %d\n", r.scenario, r.alertsExpected, r.alertsMissed, r.alertsExtra)
		}
	}
}

func byKind(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// dropouts are the silences the simulator injected, per device: a gap
// alert when such a device resumes is a true device alert, not the fault's.
type dropouts map[string][]simulator.GroundTruth

func readDropouts(path string) (dropouts, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the simulator's ground truth: %w", err)
	}
	out := dropouts{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var g simulator.GroundTruth
		if line == "" || json.Unmarshal([]byte(line), &g) != nil || g.Kind != simulator.AnomalyDropout {
			continue
		}
		out[g.DeviceID] = append(out[g.DeviceID], g)
	}
	return out, nil
}

// explain reports whether an injected dropout of device ended just before
// its readings resumed at t.
func (d dropouts) explain(device string, t time.Time) bool {
	for _, g := range d[device] {
		if !t.Before(g.Start) && !t.After(g.End.Add(5*time.Second)) {
			return true
		}
	}
	return false
}

// compareAlerts runs one detector, configured as the processors are, over
// the readings topic (each partition in order: a device's readings are in
// one) and compares the alert events it raises with those the processors
// put on the raw alerts topic, each event once. Restarts and rebalances
// restore the detector state from its checkpoints, so the two must be
// equal: after a kill -9, a graceful restart, or partitions moving to a
// second processor and back. The raw alerts topic is read again for up to
// 30 s while the processor finishes its last readings.
func (r *run) compareAlerts(ctx context.Context, res *row, readings []kafka.Message) error {
	var cfg detect.Config
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		return err
	}
	det := detect.New(cfg)
	var out []sensor.Alert
	for _, m := range readings {
		rd, err := sensor.ParseReading(m.Value)
		if err != nil {
			continue // dead-lettered, never scored
		}
		out, _ = det.Observe(&rd, out, nil)
	}
	want := map[string]bool{}
	for _, a := range out {
		want[a.AlertID+" "+a.State] = true
	}
	var missed, extra []string
	for end := time.Now().Add(30 * time.Second); ; {
		raw, err := r.f.readTopic(ctx, r.id+".alerts.raw")
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, m := range raw {
			if a, err := sensor.ParseAlert(m.Value); err == nil && a.DeviceID != "" {
				got[a.AlertID+" "+a.State] = true
			}
		}
		missed, extra = missed[:0], extra[:0]
		for k := range want {
			if !got[k] {
				missed = append(missed, k)
			}
		}
		for k := range got {
			if !want[k] {
				extra = append(extra, k)
			}
		}
		if len(missed)+len(extra) == 0 || time.Now().After(end) {
			break
		}
		time.Sleep(3 * time.Second)
	}
	res.alertsExpected, res.alertsMissed, res.alertsExtra = len(want), len(missed), len(extra)
	if len(missed)+len(extra) > 0 {
		sort.Strings(missed)
		sort.Strings(extra)
		_ = os.WriteFile(filepath.Join(r.dir, "alert-mismatch.txt"),
			[]byte("missed (an uninterrupted detector raises them):\n"+strings.Join(missed, "\n")+"\n\nextra:\n"+strings.Join(extra, "\n")+"\n"), 0o644)
	}
	return nil
}

// lateReadings notes the readings that reached the readings topic after a
// later one of their device: with several bridges on a shared
// subscription a device's readings are split between them, and one
// bridge's batch can land after the other's.
type lateReadings struct {
	latest map[string]time.Time
	late   map[string][]time.Time
}

// add notes a reading of device at ts, in the order of the readings topic
// (redelivered copies left out).
func (l *lateReadings) add(device string, ts time.Time) {
	if l.latest == nil {
		l.latest, l.late = map[string]time.Time{}, map[string][]time.Time{}
	}
	last, ok := l.latest[device]
	switch {
	case !ok || ts.After(last):
		l.latest[device] = ts
	case ts.Before(last):
		l.late[device] = append(l.late[device], ts)
	}
}

// explains reports whether a gap alert of device that started at started
// was raised on a reading that overtook others: a late reading of the
// device fills its silence (lies less than ten seconds before it).
func (l *lateReadings) explains(device string, started time.Time) bool {
	for _, t := range l.late[device] {
		if t.Before(started) && started.Sub(t) < 10*time.Second {
			return true
		}
	}
	return false
}
