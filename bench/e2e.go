package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sensorflow/sensorflow/internal/harness"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// latencies collects durations safely from many goroutines.
type latencies struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.mu.Unlock()
}

// quantiles returns p50, p99 and max in milliseconds.
func (l *latencies) quantiles() (p50, p99, mx float64, n int) {
	l.mu.Lock()
	ds := slices.Clone(l.ds)
	l.mu.Unlock()
	if len(ds) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		return float64(ds[max(i, 0)].Microseconds()) / 1000
	}
	return at(0.5), at(0.99), float64(ds[len(ds)-1].Microseconds()) / 1000, len(ds)
}

// endToEnd publishes at a sustained rate through Mosquitto, the bridge,
// Kafka and the processor (InfluxDB and Cassandra) and measures, per
// reading, publish → alert on MQTT and publish → queryable in InfluxDB;
// then checks every acknowledged reading is in InfluxDB.
func (b *bench) endToEnd(ctx context.Context) error {
	for _, r := range strings.Split(b.cfg.e2eRates, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || rate < 10 {
			return fmt.Errorf("-e2e.rates: %q is not a rate of at least 10 readings/s", r)
		}
		if err := b.endToEndAt(ctx, rate, max(1, rate/b.cfg.e2ePerDevice)); err != nil {
			return fmt.Errorf("at %d readings/s: %w", rate, err)
		}
	}
	return nil
}

// endToEndAt runs the end-to-end measurement at one rate.
func (b *bench) endToEndAt(ctx context.Context, rate, devices int) error {
	id := fmt.Sprintf("%s-e2e%d", b.id, rate)
	prefix := id
	k := b.kafkaConfig(id)
	defer b.dropTopics(k)
	keyspace := strings.ReplaceAll(id, "-", "_")
	defer b.dropKeyspace(keyspace)

	br, err := harness.Start(ctx, b.cfg.bin, b.cfg.out+"/logs", "e2e-bridge", b.bridgeArgs(id, prefix, k, true)...)
	if err != nil {
		return err
	}
	defer br.Stop()
	pr, err := harness.Start(ctx, b.cfg.bin, b.cfg.out+"/logs", "e2e-processor", b.processorArgs(id, k, true, b.cfg.e2eCassandra, keyspace)...)
	if err != nil {
		return err
	}
	defer pr.Stop()

	// Alerts at the edge: the time from a reading's publish (its ts) to
	// the MQTT message of the alert it opened.
	var alertLat latencies
	var falseAlerts, alertsSeen int64
	var amu sync.Mutex
	injected := map[string]bool{} // devices given an anomaly
	mc := b.mqttConfig()
	ao, err := mc.Options(id+"-alerts", true)
	if err != nil {
		return err
	}
	ac := mqtt.NewClient(ao)
	if err := mqttx.Wait(ac.Connect(), 10*time.Second); err != nil {
		return err
	}
	defer ac.Disconnect(100)
	onAlert := func(_ mqtt.Client, m mqtt.Message) {
		now := time.Now()
		var a sensor.Alert
		if json.Unmarshal(m.Payload(), &a) != nil || a.State != "open" {
			return
		}
		amu.Lock()
		alertsSeen++
		if !injected[a.DeviceID] {
			falseAlerts++
		}
		amu.Unlock()
		alertLat.add(now.Sub(a.TS))
	}
	if err := mqttx.Wait(ac.Subscribe(prefix+"/+/+/alerts", 1, onAlert), 10*time.Second); err != nil {
		return err
	}

	// Queryable in InfluxDB: every 250 ms one reading just published
	// becomes a probe; one poller asks InfluxDB for the oldest outstanding
	// probe every 20 ms until it is there, then moves to the next. One
	// query at a time keeps the measurement from loading InfluxDB.
	ic := influxdb2.NewClient(b.srv.InfluxURL, b.srv.InfluxToken)
	defer ic.Close()
	qa := ic.QueryAPI("sensorflow")
	var influxLat latencies
	type probe struct {
		device string
		ts     time.Time
	}
	probes := make(chan probe, 10000)
	probeErrs := 0
	pollerDone := make(chan struct{})
	go func() {
		defer close(pollerDone)
		for p := range probes {
			q := fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and r.device_id == %q) |> count()`,
				b.srv.InfluxBucket, p.ts.Format(time.RFC3339Nano), p.ts.Add(time.Microsecond).Format(time.RFC3339Nano), p.device)
			for {
				res, err := qa.Query(ctx, q)
				if err == nil {
					found := res.Next()
					res.Close()
					if found {
						influxLat.add(time.Since(p.ts))
						break
					}
				}
				if time.Since(p.ts) > 2*time.Minute || ctx.Err() != nil {
					probeErrs++
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()

	pubs, err := connectPublishers(b.mqttConfig(), id, 8)
	if err != nil {
		return err
	}
	defer pubs.close()
	// Anomalies start once every series is past its warm-up: a jump of
	// 25 (noise is ±0.5) for three readings, on a new device every 200 ms.
	warm := 20 * time.Second
	spikeEvery := rate / 5
	spikeUntil := map[int]int{} // device → last step of its spike
	nextProbe := time.Now()
	start := time.Now()
	busy0, total0 := harness.MachineCPU()
	cpuB0, _ := br.CPU()
	cpuP0, _ := pr.CPU()
	var lastTS time.Time
	next := func(i int, now time.Time) (string, []byte) {
		// Every reading gets its own timestamp, even when a late tick
		// sends a burst: InfluxDB keeps one point per series and time.
		if !now.After(lastTS) {
			now = lastTS.Add(time.Microsecond)
		}
		lastTS = now
		d, step := i%devices, i/devices
		dev := fmt.Sprintf("%s-dev-%05d", id, d)
		v := 21 + float64((i*7919)%1000)/1000 - 0.5
		if now.Sub(start) > warm && i%spikeEvery == 0 && len(spikeUntil) < devices {
			for dd := (i / spikeEvery) % devices; ; dd = (dd + 1) % devices {
				if _, done := spikeUntil[dd]; !done {
					spikeUntil[dd] = step + 3
					amu.Lock()
					injected[fmt.Sprintf("%s-dev-%05d", id, dd)] = true
					amu.Unlock()
					break
				}
			}
		}
		if last, ok := spikeUntil[d]; ok && step <= last && step > last-3 {
			v += 25
		}
		if now.After(nextProbe) {
			nextProbe = nextProbe.Add(250 * time.Millisecond)
			select {
			case probes <- probe{dev, now.UTC()}:
			default:
			}
		}
		payload := fmt.Appendf(nil, `{"ts":%q,"seq":%d,"metrics":{"temperature":%s,"humidity":%s}}`,
			now.UTC().Format(time.RFC3339Nano), step, strconv.FormatFloat(v, 'f', 3, 64), strconv.FormatFloat(45+float64(i%89)/100, 'f', 2, 64))
		return fmt.Sprintf("%s/site-%d/%s/telemetry", prefix, d%10, dev), payload
	}
	waitProfiles := b.e2eProfiles(ctx, br, pr, rate, warm)
	sent, acked, err := pubs.paced(ctx, rate, b.cfg.e2eDuration, next)
	waitProfiles()
	if err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	elapsed := time.Since(start)
	busy := harness.BusySince(busy0, total0)
	b.log.Info("e2e published", "sent", sent, "acked", acked, "rate", int(float64(sent)/elapsed.Seconds()))

	// Every acknowledged reading stored, then counted in InfluxDB.
	if _, err := pr.WaitMetric(ctx, "sensorflow_processor_readings_total", map[string]string{"result": "stored"}, float64(acked), 5*time.Minute); err != nil {
		return err
	}
	cpuB1, _ := br.CPU()
	cpuP1, _ := pr.CPU()
	close(probes)
	<-pollerDone
	time.Sleep(2 * time.Second) // the last alerts
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: %s) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and r.device_id =~ /^%s-dev-/) |> group() |> count()`,
		b.srv.InfluxBucket, start.Add(-time.Minute).UTC().Format(time.RFC3339), strings.ReplaceAll(id, "-", `\-`))
	res, err := qa.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("counting in influxdb: %w", err)
	}
	var inInflux int64
	for res.Next() {
		if v, ok := res.Record().Value().(int64); ok {
			inInflux += v
		}
	}
	res.Close()
	lost := acked - inInflux
	_, bridgePeak, _ := br.Memory()
	_, procPeak, _ := pr.Memory()

	at := fmt.Sprintf("%d/s", rate)
	p50, p99, mx, n := alertLat.quantiles()
	amu.Lock()
	nInjected := len(injected)
	amu.Unlock()
	note := fmt.Sprintf("%d alerts opened, %d of them on the %d devices given an anomaly", alertsSeen, alertsSeen-falseAlerts, nInjected)
	b.add(result{Section: "e2e", Name: "publish → alert on MQTT p50 @" + at, Value: p50, Unit: "ms", Note: note})
	b.add(result{Section: "e2e", Name: "publish → alert on MQTT p99 @" + at, Value: p99, Unit: "ms"})
	b.add(result{Section: "e2e", Name: "publish → alert on MQTT max @" + at, Value: mx, Unit: "ms"})
	_ = n
	p50, p99, mx, n = influxLat.quantiles()
	b.add(result{Section: "e2e", Name: "publish → queryable in InfluxDB p50 @" + at, Value: p50, Unit: "ms",
		Note: fmt.Sprintf("%d probes (one every 250 ms, polled every 20 ms, oldest first), %d not found within 2 min", n, probeErrs)})
	b.add(result{Section: "e2e", Name: "publish → queryable in InfluxDB p99 @" + at, Value: p99, Unit: "ms"})
	b.add(result{Section: "e2e", Name: "publish → queryable in InfluxDB max @" + at, Value: mx, Unit: "ms"})
	b.add(result{Section: "e2e", Name: "sustained publish rate @" + at, Value: float64(sent) / elapsed.Seconds(), Unit: "readings/s", Target: 0.98 * float64(rate),
		Note: fmt.Sprintf("%d devices for %s; machine CPU %.0f%% busy; bridge %.1f µs and processor %.1f µs of CPU per reading; peak RSS bridge %d MiB, processor %d MiB",
			devices, b.cfg.e2eDuration, 100*busy, float64((cpuB1-cpuB0).Microseconds())/float64(acked), float64((cpuP1-cpuP0).Microseconds())/float64(acked), bridgePeak>>20, procPeak>>20)})
	b.add(result{Section: "e2e", Name: "acknowledged readings lost @" + at, Value: float64(lost), Unit: "readings", Target: 0.5, Lower: true,
		Note: fmt.Sprintf("%d published, %d acknowledged, %d in InfluxDB", sent, acked, inInflux)})
	return nil
}

func (b *bench) dropKeyspace(keyspace string) {
	var cass = defaultCassandra()
	cass.Hosts = b.srv.CassandraHosts
	if cl, err := cass.Cluster(""); err == nil {
		if s, err := cl.CreateSession(); err == nil {
			_ = s.Query(`DROP KEYSPACE IF EXISTS ` + keyspace).Exec()
			s.Close()
		}
	}
}

// e2eProfiles, with -e2e.profile, takes CPU profiles of the bridge and the
// processor in the middle of an end-to-end run, past its warm-up (where a
// reading's CPU goes at this rate); the returned func waits for them and
// logs what failed. Without the flag it does nothing.
func (b *bench) e2eProfiles(ctx context.Context, br, pr *harness.Proc, rate int, warm time.Duration) (wait func()) {
	if !b.cfg.e2eProfile {
		return func() {}
	}
	at := min(warm+5*time.Second, b.cfg.e2eDuration/2)
	length := max(time.Second, min(15*time.Second, b.cfg.e2eDuration-at-time.Second))
	errs := make(chan error, 2)
	go func() {
		select {
		case <-time.After(at):
		case <-ctx.Done():
			errs <- ctx.Err()
			errs <- ctx.Err()
			return
		}
		pb := br.Profile(length, fmt.Sprintf("%s/profiles/e2e-bridge-%d.cpu.pprof", b.cfg.out, rate))
		pp := pr.Profile(length, fmt.Sprintf("%s/profiles/e2e-processor-%d.cpu.pprof", b.cfg.out, rate))
		errs <- <-pb
		errs <- <-pp
	}()
	return func() {
		for range 2 {
			if err := <-errs; err != nil {
				b.log.Warn("e2e profile", "rate", rate, "err", err)
			}
		}
	}
}
