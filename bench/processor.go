package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/harness"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/processor/sink/sinktest"
)

// Defaults of the processor the bench compares against: its batch and
// InfluxDB request sizes, read from the flags so they cannot drift.
func processorDefaults() (batch, influxLines, cassConcurrency int, detectCfg detect.Config, cass sink.CassandraConfig) {
	fs := flag.NewFlagSet("", flag.PanicOnError)
	batch = 2000
	fs.IntVar(&batch, "processor.batch-size", 2000, "")
	var influx sink.InfluxConfig
	influx.RegisterFlags(fs)
	cass.RegisterFlags(fs)
	detectCfg.RegisterFlags(fs)
	_ = fs.Parse(nil)
	return batch, influx.BatchLines, cass.Concurrency, detectCfg, cass
}

// checkpointEvery is the processor's default checkpoint interval.
func checkpointEvery() time.Duration {
	var c processor.Config
	fs := flag.NewFlagSet("", flag.PanicOnError)
	c.RegisterFlags(fs)
	_ = fs.Parse(nil)
	return c.CheckpointInterval
}

// makeReadings returns n readings of devices devices with two metrics each,
// one per device per second ending now: a daily-ish wave plus noise.
func makeReadings(prefix string, n, devices int) []sensor.Reading {
	out := make([]sensor.Reading, n)
	start := time.Now().UTC().Add(-time.Duration(n/devices+1) * time.Second).Truncate(time.Second)
	for i := range out {
		d := i % devices
		step := i / devices
		phase := float64(step)/600*2*math.Pi + float64(d)
		noise := float64((i*7919)%1000)/1000 - 0.5
		out[i] = sensor.Reading{
			DeviceID: fmt.Sprintf("%s-dev-%05d", prefix, d),
			Site:     fmt.Sprintf("%s-site-%d", prefix, d%10),
			TS:       start.Add(time.Duration(step) * time.Second),
			Seq:      int64(step),
			Metrics:  map[string]float64{"temperature": 21 + 3*math.Sin(phase) + noise, "humidity": 45 + 5*math.Cos(phase) + 2*noise},
		}
	}
	return out
}

// fillTopic writes the readings to k's readings topic, keyed by device.
func (b *bench) fillTopic(ctx context.Context, k kafkax.Config, readings []sensor.Reading) error {
	if err := k.EnsureTopics(ctx); err != nil {
		return err
	}
	w, err := k.Writer(5000, 5*time.Millisecond)
	if err != nil {
		return err
	}
	defer w.Close()
	msgs := make([]kafka.Message, 0, 20000)
	for i := range readings {
		r := &readings[i]
		msgs = append(msgs, kafka.Message{Topic: k.ReadingsTopic, Key: []byte(r.DeviceID), Value: r.AppendJSON(nil)})
		if len(msgs) == cap(msgs) || i == len(readings)-1 {
			if err := kafkax.WriteAll(ctx, w, msgs, b.log, "filling the readings topic", nil); err != nil {
				return err
			}
			msgs = msgs[:0]
		}
	}
	return nil
}

// influxWriteURL is the v2 write endpoint; 1.8 and 2.x both serve it.
func (b *bench) influxWriteURL() string {
	q := url.Values{"org": {"sensorflow"}, "bucket": {b.srv.InfluxBucket}, "precision": {"ns"}}
	return strings.TrimRight(b.srv.InfluxURL, "/") + "/api/v2/write?" + q.Encode()
}

func (b *bench) influxPost(ctx context.Context, cl *http.Client, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if b.srv.InfluxToken != "" {
		req.Header.Set("Authorization", "Token "+b.srv.InfluxToken)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("influxdb write: %s: %s", resp.Status, msg)
	}
	return nil
}

// encodeBodies runs the detector over the readings in processor-sized
// batches, exactly as the processor does, and encodes the line protocol the
// InfluxDB sink would write, split into requests of influxLines lines.
func encodeBodies(readings []sensor.Reading, batch, influxLines int, cfg detect.Config) (bodies [][]byte, points int) {
	det := detect.New(cfg)
	for lo := 0; lo < len(readings); lo += batch {
		var sb sink.Batch
		sb.Readings = readings[lo:min(lo+batch, len(readings))]
		for i := range sb.Readings {
			sb.Alerts, sb.Scores = det.Observe(&sb.Readings[i], sb.Alerts, sb.Scores)
		}
		all := sink.AppendLineProtocol(nil, sb)
		for len(all) > 0 {
			cut, lines := 0, 0
			for cut < len(all) && lines < influxLines {
				j := bytes.IndexByte(all[cut:], '\n')
				cut += j + 1
				lines++
			}
			bodies = append(bodies, all[:cut])
			points += lines
			all = all[cut:]
		}
	}
	return bodies, points
}

// processorArgs are the flags of a processor process reading k with only
// the named sink on.
func (b *bench) processorArgs(id string, k kafkax.Config, influx, cassandra bool, keyspace string) []string {
	args := []string{
		"-target=processor",
		"-kafka.brokers=" + k.Brokers,
		"-kafka.readings-topic=" + k.ReadingsTopic,
		"-kafka.alerts-topic=" + k.AlertsTopic,
		"-kafka.deadletter-topic=" + k.DeadLetterTopic,
		"-processor.group=" + id + "-processor",
		fmt.Sprintf("-influx.enabled=%t", influx),
		"-influx.url=" + b.srv.InfluxURL,
		"-influx.bucket=" + b.srv.InfluxBucket,
		fmt.Sprintf("-cassandra.enabled=%t", cassandra),
		"-cassandra.hosts=" + b.srv.CassandraHosts,
	}
	if keyspace != "" {
		args = append(args, "-cassandra.keyspace="+keyspace)
	}
	return args
}

// influxRun fills a topic of its own with n readings and runs a processor
// with only the InfluxDB sink over it; checkpoint, unless empty, is its
// -processor.checkpoint-interval.
func (b *bench) influxRun(ctx context.Context, id, checkpoint string, n int, profile string) (rate, cpuPer float64, peak int64, err error) {
	name := "bench-processor-influx"
	if checkpoint != "" {
		id += "-ck" + checkpoint
		name += "-checkpoint-" + checkpoint
	}
	k := b.kafkaConfig(id)
	if err := b.fillTopic(ctx, k, makeReadings(id+"-p", n, 2000)); err != nil {
		return 0, 0, 0, err
	}
	defer b.dropTopics(k)
	args := b.processorArgs(id, k, true, false, "")
	if checkpoint != "" {
		args = append(args, "-processor.checkpoint-interval="+checkpoint)
	}
	return b.runProcessor(ctx, name, args, n, profile)
}

// runProcessor starts a processor over a filled topic and measures
// readings/s from the first stored batch to the last, its CPU per reading
// and its peak memory.
func (b *bench) runProcessor(ctx context.Context, name string, args []string, n int, profile string) (rate, cpuPer float64, peak int64, err error) {
	p, err := harness.Start(ctx, b.cfg.bin, b.cfg.out+"/logs", name, args...)
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.Stop()
	stored := map[string]string{"result": "stored"}
	t0, err := p.WaitMetric(ctx, "sensorflow_processor_readings_total", stored, 1, 120*time.Second)
	if err != nil {
		return 0, 0, 0, err
	}
	n0, _ := p.Metric("sensorflow_processor_readings_total", stored)
	cpu0, _ := p.CPU()
	busy0, total0 := harness.MachineCPU()
	var prof <-chan error
	if profile != "" {
		prof = p.Profile(5*time.Second, profile)
	}
	t1, err := p.WaitMetric(ctx, "sensorflow_processor_readings_total", stored, float64(n), 300*time.Second)
	if err != nil {
		return 0, 0, 0, err
	}
	cpu1, _ := p.CPU()
	b.ckptBytes, _ = p.Metric("sensorflow_processor_checkpoint_bytes_total", nil)
	b.ckptSeries, _ = p.Metric("sensorflow_processor_checkpoint_series_total", nil)
	b.ckpts, _ = p.Metric("sensorflow_processor_checkpoints_total", map[string]string{"result": "written"})
	b.log.Info("processor run", "name", name, "machine_busy", fmt.Sprintf("%.0f%%", 100*harness.BusySince(busy0, total0)))
	_, peak, _ = p.Memory()
	if prof != nil {
		if err := <-prof; err != nil {
			b.log.Warn("processor profile", "err", err)
		}
	}
	done := float64(n) - n0
	return done / t1.Sub(t0).Seconds(), float64((cpu1 - cpu0).Microseconds()) / done, peak, nil
}

// processor measures Kafka → detection → InfluxDB against InfluxDB's own
// ingest of the same line protocol, pre-encoded, in requests of the same
// size from one writer (the processor writes one batch at a time).
func (b *bench) processor(ctx context.Context) error {
	batch, influxLines, _, detectCfg, _ := processorDefaults()
	n := b.cfg.processorReadings
	cl := &http.Client{Timeout: time.Minute}
	var ceil, rate, cpuPer []float64
	var peak int64
	var ckptPerSeries float64
	var ckptNote string
	var rateOff, rate1s []float64
	var ck1Note string
	for round := range b.cfg.rounds {
		id := fmt.Sprintf("%s-p%d", b.id, round)

		// Ceiling: the same line protocol straight to InfluxDB.
		bodies, points := encodeBodies(makeReadings(id+"-c", n, 2000), batch, influxLines, detectCfg)
		busy0, total0 := harness.MachineCPU()
		t0 := time.Now()
		for _, body := range bodies {
			if err := b.influxPost(ctx, cl, b.influxWriteURL(), body); err != nil {
				return err
			}
		}
		ceil = append(ceil, float64(n)/time.Since(t0).Seconds())
		b.log.Info("influxdb ceiling", "round", round, "points", points, "requests", len(bodies), "readings_s", int(ceil[round]), "points_s", int(float64(points)/time.Since(t0).Seconds()),
			"machine_busy", fmt.Sprintf("%.0f%%", 100*harness.BusySince(busy0, total0)))
		bodies = nil

		// The processor, over a topic filled beforehand.
		profile := ""
		if round == 0 {
			profile = b.cfg.out + "/profiles/processor-influx.cpu.pprof"
		}
		r, c, pk, err := b.influxRun(ctx, id, "", n, profile)
		if err != nil {
			return err
		}
		rate, cpuPer, peak = append(rate, r), append(cpuPer, c), max(peak, pk)
		if b.ckptSeries > 0 {
			ckptPerSeries = b.ckptBytes / b.ckptSeries
			ckptNote = fmt.Sprintf("%.0f checkpoints in the round's run, %.0f series and %.1f MB written", b.ckpts, b.ckptSeries, b.ckptBytes/1e6)
		}
		// The same run with checkpoints off (what they cost), and with a
		// checkpoint every second (a run of a few seconds holds one at the
		// default interval, this one several).
		r0, _, _, err := b.influxRun(ctx, id, "0", n, "")
		if err != nil {
			return err
		}
		r1, _, _, err := b.influxRun(ctx, id, "1s", n, "")
		if err != nil {
			return err
		}
		rateOff, rate1s = append(rateOff, r0), append(rate1s, r1)
		ck1Note = fmt.Sprintf("%.0f checkpoints, %.1f MB written in the run", b.ckpts, b.ckptBytes/1e6)
		if ckptNote == "" && b.ckptSeries > 0 {
			// The default run ended before its first checkpoint (the
			// last one, at shutdown, comes after the counters are read):
			// the size per series is the same in this run's.
			ckptPerSeries = b.ckptBytes / b.ckptSeries
			ckptNote = fmt.Sprintf("from the checkpoint-every-1s run (the default run ended before its first): %.0f checkpoints, %.0f series and %.1f MB written", b.ckpts, b.ckptSeries, b.ckptBytes/1e6)
		}
		b.log.Info("processor round", "round", round, "ceiling_readings_s", int(ceil[round]), "processor_readings_s", int(r), "cpu_us_per_reading", c)
	}
	b.add(result{Section: "processor", Name: "Kafka → detect → InfluxDB", Value: best(rate), Unit: "readings/s", Ceiling: best(ceil), Target: 0.9,
		Note: fmt.Sprintf("%d readings (2 metrics, 2 lines each) per round, best of %d, detector checkpoints on (every %s, the default); ceiling: the same line protocol pre-encoded, %d-line requests, one writer", n, b.cfg.rounds, checkpointEvery(), influxLines)})
	b.add(result{Section: "processor", Name: "Kafka → detect → InfluxDB, checkpoints off", Value: best(rateOff), Unit: "readings/s", Ceiling: best(ceil),
		Note: "the same run with -processor.checkpoint-interval=0 (offsets committed every batch; series start over after a restart or rebalance): what checkpoints cost"})
	b.add(result{Section: "processor", Name: "Kafka → detect → InfluxDB, checkpoint every 1s", Value: best(rate1s), Unit: "readings/s", Ceiling: best(ceil),
		Note: "the same run with -processor.checkpoint-interval=1s, five times the default's checkpoints; last round: " + ck1Note})
	b.add(result{Section: "processor", Name: "detector checkpoint per series", Value: ckptPerSeries, Unit: "B",
		Note: "state written to the compacted state topic per series and checkpoint (only series scored since the previous checkpoint are written); last round: " + ckptNote})
	b.add(result{Section: "processor", Name: "CPU per reading (InfluxDB)", Value: lowest(cpuPer), Unit: "µs"})
	b.add(result{Section: "processor", Name: "peak RSS (InfluxDB)", Value: float64(peak) / (1 << 20), Unit: "MiB"})
	if b.cfg.peers {
		if err := b.telegrafProcessor(ctx, n, best(ceil), best(rate), lowest(cpuPer)); err != nil {
			b.add(result{Section: "processor", Name: "error", Note: "peer Telegraf: " + err.Error()})
		}
	}
	return nil
}

// cassandra measures Kafka → detection → Cassandra against a plain gocql
// loop: the sink's prepared INSERT with the same concurrency, no Sensorflow
// code, on rows of the same shape.
func (b *bench) cassandra(ctx context.Context) error {
	_, _, concurrency, _, cass := processorDefaults()
	n := b.cfg.cassandraReadings
	keyspace := strings.ReplaceAll(b.id, "-", "_") + "_bench"
	cass.Hosts, cass.Keyspace = b.srv.CassandraHosts, keyspace
	if err := cass.ApplySchemaNow(ctx); err != nil {
		return err
	}
	defer b.dropKeyspace(keyspace)
	cl, err := cass.Cluster(keyspace)
	if err != nil {
		return err
	}
	sess, err := cl.CreateSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	ttl := int(cass.TTL.Seconds())

	var ceil, rate, cpuPer []float64
	var shares [][2]cpuShare
	for round := range b.cfg.rounds {
		id := fmt.Sprintf("%s-c%d", b.id, round)
		plainReadings := makeReadings(id+"-c", n, 2000)
		srv0, self0 := serverCPU(), selfCPU()
		busy0, total0 := harness.MachineCPU()
		rows, err := sinktest.PlainInserts(ctx, sess, concurrency, plainReadings, ttl)
		if err != nil {
			return err
		}
		plainBusy := harness.BusySince(busy0, total0)
		srv1, self1 := serverCPU(), selfCPU()
		ceil = append(ceil, rows)
		k := b.kafkaConfig(id)
		if err := b.fillTopic(ctx, k, makeReadings(id+"-p", n, 2000)); err != nil {
			return err
		}
		profile := ""
		if round == 0 {
			profile = b.cfg.out + "/profiles/processor-cassandra.cpu.pprof"
		}
		srv2 := serverCPU()
		busy0, total0 = harness.MachineCPU()
		r, c, _, err := b.runProcessor(ctx, "bench-processor-cassandra", b.processorArgs(id, k, false, true, keyspace), n, profile)
		b.dropTopics(k)
		if err != nil {
			return err
		}
		procBusy := harness.BusySince(busy0, total0)
		srv3 := serverCPU()
		rate, cpuPer = append(rate, 2*r), append(cpuPer, c)
		// What bounds the run: CPU per row of every process on the path.
		rowsN := float64(2 * n)
		us := func(d time.Duration) float64 { return float64(d.Microseconds()) / rowsN }
		plain := cpuShare{cassandra: us(srv1["cassandra"] - srv0["cassandra"]), client: us(self1 - self0), busy: plainBusy}
		proc := cpuShare{cassandra: us(srv3["cassandra"] - srv2["cassandra"]), kafka: us(srv3["kafka"] - srv2["kafka"]), client: c / 2, busy: procBusy}
		shares = append(shares, [2]cpuShare{plain, proc})
		b.log.Info("cassandra round", "round", round, "plain_rows_s", int(rows), "processor_rows_s", int(2*r))
	}
	b.add(result{Section: "cassandra", Name: "Kafka → detect → Cassandra", Value: best(rate), Unit: "rows/s", Ceiling: best(ceil), Target: 0.9,
		Note: fmt.Sprintf("%d readings (2 rows each) per round, best of %d; ceiling: a plain gocql loop of the sink's prepared INSERT, %d in flight; per round, processor ÷ the plain loop run just before it: %s (Cassandra's own rate moves from round to round, so best ÷ best can pair a slow processor round with a fast ceiling)", n, b.cfg.rounds, concurrency, pairedRatios(rate, ceil))})
	b.add(result{Section: "cassandra", Name: "CPU per reading (Cassandra)", Value: lowest(cpuPer), Unit: "µs"})
	// The round the processor did best in explains its ratio.
	bi := bestRound(rate)
	pl, pr := shares[bi][0], shares[bi][1]
	b.add(result{Section: "cassandra", Name: "machine CPU per row, plain loop", Value: pl.total(), Unit: "µs",
		Note: fmt.Sprintf("Cassandra %.1f + the gocql loop %.1f µs per row; machine %.0f%% busy", pl.cassandra, pl.client, 100*pl.busy)})
	b.add(result{Section: "cassandra", Name: "machine CPU per row, processor", Value: pr.total(), Unit: "µs",
		Note: fmt.Sprintf("Cassandra %.1f + Kafka %.1f + the processor %.1f µs per row; machine %.0f%% busy. With the machine saturated in both runs, rows/s can reach at most the plain loop's CPU per row ÷ this one = %.3f of the ceiling: the Kafka broker serving the fetches and the processor's own decoding and detection take cores that the plain loop leaves to Cassandra", pr.cassandra, pr.kafka, pr.client, 100*pr.busy, pl.total()/pr.total())})
	return nil
}

func defaultCassandra() sink.CassandraConfig {
	_, _, _, _, c := processorDefaults()
	return c
}

// cpuShare is the CPU each process on a Cassandra run's path spent per row
// written, in µs, and how busy the machine was.
type cpuShare struct {
	cassandra, kafka, client, busy float64
}

func (c cpuShare) total() float64 { return c.cassandra + c.kafka + c.client }

// serverCPU reads the CPU time of the local servers that `make services`
// started (their pid files), by name; a server it cannot read is missing.
func serverCPU() map[string]time.Duration {
	dir := os.Getenv("SENSORFLOW_SERVICES_DIR")
	if dir == "" {
		dir = ".services"
	}
	out := map[string]time.Duration{}
	for _, name := range []string{"cassandra", "kafka", "mosquitto"} {
		b, err := os.ReadFile(filepath.Join(dir, "run", name+".pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		if d, err := harness.PidCPU(pid); err == nil {
			out[name] = d
		}
	}
	return out
}

// selfCPU is this process's CPU time (the plain gocql loop runs in it).
func selfCPU() time.Duration {
	d, _ := harness.PidCPU(os.Getpid())
	return d
}

// pairedRatios formats value ÷ ceiling of each round.
func pairedRatios(values, ceilings []float64) string {
	out := make([]string, len(values))
	for i := range values {
		out[i] = fmt.Sprintf("%.3f (%.0f ÷ %.0f)", values[i]/ceilings[i], values[i], ceilings[i])
	}
	return strings.Join(out, ", ")
}
