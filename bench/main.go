// Command bench measures Sensorflow against the real servers and states
// every throughput as a ratio to a ceiling measured in the same run on the
// same machine: the bridge against a plain QoS 1 subscriber, the processor
// against pre-encoded writes straight to InfluxDB and a plain gocql insert
// loop. It also measures end-to-end latency at a sustained rate, memory per
// series, the simulator at scale and the detector's cost per reading, then
// prints one table and writes bench.json and bench.svg.
//
// Run it through `make bench`, which starts the local servers first.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sensorflow/sensorflow/internal/harness"
	"github.com/sensorflow/sensorflow/internal/testenv"
)

// result is one row of the table.
type result struct {
	Section string  `json:"section"`
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	// Ceiling and Ratio are set for throughputs measured against one.
	Ceiling float64 `json:"ceiling,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
	// Target is the goal for Ratio (or for Value when there is no
	// ceiling and Lower says smaller is better).
	Target float64 `json:"target,omitempty"`
	Lower  bool    `json:"lower_is_better,omitempty"`
	Met    *bool   `json:"met,omitempty"`
	Note   string  `json:"note,omitempty"`
}

type config struct {
	out      string
	bin      string
	sections string

	bridgeMessages   int
	bridgePublishers int
	rounds           int

	processorReadings int
	cassandraReadings int

	e2eRates     string
	e2ePerDevice int
	e2eDuration  time.Duration
	e2eCassandra bool
	e2eProfile   bool

	peers    bool
	telegraf string

	scaleSeries string
	simDevices  int
	simDuration time.Duration
}

type bench struct {
	cfg     config
	srv     testenv.Servers
	id      string
	log     *slog.Logger
	results []result
	// checkpoints of the last processor run: bytes and series written
	ckptBytes, ckptSeries, ckpts float64
}

func main() {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.StringVar(&cfg.out, "out", "out", "Directory for bench.json, bench.svg and the services' logs.")
	fs.StringVar(&cfg.bin, "bin", "bin/sensorflow", "The sensorflow binary the services run from.")
	fs.StringVar(&cfg.sections, "sections", "bridge,processor,cassandra,e2e,scale,detect", "Comma-separated sections to run.")
	fs.IntVar(&cfg.bridgeMessages, "bridge.messages", 300000, "Messages per bridge round.")
	fs.IntVar(&cfg.bridgePublishers, "bridge.publishers", 8, "Publishing MQTT clients.")
	fs.IntVar(&cfg.rounds, "rounds", 2, "Rounds of each throughput measurement, alternating with its ceiling; the best round counts.")
	fs.IntVar(&cfg.processorReadings, "processor.readings", 400000, "Readings per processor → InfluxDB round.")
	fs.IntVar(&cfg.cassandraReadings, "cassandra.readings", 100000, "Readings per processor → Cassandra round.")
	fs.StringVar(&cfg.e2eRates, "e2e.rates", "5000,20000", "Readings/s of the end-to-end runs, one run each: latency when the machine has room, and under load.")
	fs.IntVar(&cfg.e2ePerDevice, "e2e.per-device", 10, "Readings/s each device publishes in the end-to-end runs (devices = rate / this).")
	fs.DurationVar(&cfg.e2eDuration, "e2e.duration", 60*time.Second, "Length of the end-to-end run.")
	fs.BoolVar(&cfg.e2eProfile, "e2e.profile", false, "Take 15 s CPU profiles of the bridge and the processor in each end-to-end run (out/profiles/e2e-*.cpu.pprof); profiling costs CPU, so the latencies of such a run read higher.")
	fs.BoolVar(&cfg.e2eCassandra, "e2e.cassandra", false, "Archive to Cassandra too in the end-to-end run (on a 2-core machine Cassandra alone tops out below 20,000 readings/s of two metrics).")
	fs.BoolVar(&cfg.peers, "peers", true, "Run Telegraf next to the bridge (mqtt_consumer → kafka) and the processor (kafka_consumer → influxdb_v2) on the same load, and print its rows.")
	fs.StringVar(&cfg.telegraf, "telegraf", "", "Telegraf binary for the peer rows (empty: the one deploy/local/tools.sh builds).")
	fs.StringVar(&cfg.scaleSeries, "scale.series", "100000,1000000", "Series counts the detector's memory is measured at.")
	fs.IntVar(&cfg.simDevices, "simulator.devices", 100000, "Devices of the simulator scale run.")
	fs.DurationVar(&cfg.simDuration, "simulator.duration", 20*time.Second, "Length of the simulator scale run.")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench [flags]\n\nMeasures Sensorflow against ceilings measured in the same run, on the servers named by SENSORFLOW_MQTT_URL, SENSORFLOW_KAFKA_BROKERS, SENSORFLOW_CASSANDRA_HOSTS and SENSORFLOW_INFLUX_URL/_TOKEN/_BUCKET (default: the local servers of `make services`; InfluxDB bucket sensorflow-bench).\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := testenv.Get()
	if os.Getenv("SENSORFLOW_INFLUX_BUCKET") == "" {
		// Its own bucket, with a one-hour retention (deploy/local/services.sh
		// makes it): the bench's millions of points would slow the tests'
		// queries of the main bucket.
		srv.InfluxBucket = "sensorflow-bench"
	}
	b := &bench{
		cfg: cfg,
		srv: srv,
		id:  testenv.Unique("bench"),
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if err := b.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (b *bench) run(ctx context.Context) error {
	if err := os.MkdirAll(b.cfg.out, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(b.cfg.bin); err != nil {
		return fmt.Errorf("the sensorflow binary: %w (run `make build`)", err)
	}
	sections := strings.Split(b.cfg.sections, ",")
	type section struct {
		name string
		run  func(context.Context) error
	}
	all := []section{
		{"bridge", b.bridge},
		{"processor", b.processor},
		{"cassandra", b.cassandra},
		{"e2e", b.endToEnd},
		{"scale", b.scale},
		{"detect", b.detect},
	}
	started := time.Now()
	failed := 0
	for _, s := range all {
		if !slices.Contains(sections, s.name) {
			continue
		}
		b.log.Info("section", "name", s.name)
		t := time.Now()
		if err := s.run(ctx); err != nil {
			failed++
			b.log.Error("section failed", "name", s.name, "err", err)
			b.add(result{Section: s.name, Name: "error", Note: err.Error()})
		}
		b.log.Info("section done", "name", s.name, "took", time.Since(t).Round(time.Second))
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	b.print(os.Stdout)
	fmt.Printf("\n%d sections in %s on %d CPUs (%s); results in %s\n", len(sections), time.Since(started).Round(time.Second), runtime.NumCPU(), runtime.Version(),
		filepath.Join(b.cfg.out, "bench.json"))
	if err := b.writeJSON(filepath.Join(b.cfg.out, "bench.json"), started); err != nil {
		return err
	}
	if err := writeSVG(filepath.Join(b.cfg.out, "bench.svg"), b.results); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d sections failed", failed)
	}
	return nil
}

func (b *bench) add(r result) {
	if r.Ceiling > 0 {
		r.Ratio = r.Value / r.Ceiling
	}
	if r.Target > 0 {
		v := r.Value
		if r.Ceiling > 0 {
			v = r.Ratio
		}
		met := v >= r.Target
		if r.Lower {
			met = v <= r.Target
		}
		r.Met = &met
	}
	b.results = append(b.results, r)
	b.log.Info("result", "section", r.Section, "name", r.Name, "value", fmt.Sprintf("%.4g %s", r.Value, r.Unit), "ratio", fmt.Sprintf("%.3f", r.Ratio))
}

func (b *bench) print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s; commit %s; %s\n\n", harness.CPUModel(), runtime.NumCPU(), runtime.Version(), harness.Commit(), time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "section\tmeasure\tsensorflow\tceiling\tratio\ttarget\t\t")
	for _, r := range b.results {
		ceil, ratio, target, met := "", "", "", ""
		if r.Ceiling > 0 {
			ceil, ratio = human(r.Ceiling), fmt.Sprintf("%.3f", r.Ratio)
		}
		if r.Target > 0 {
			op := "≥"
			if r.Lower {
				op = "≤"
			}
			target = op + human(r.Target)
			if r.Met != nil {
				met = map[bool]string{true: "met", false: "MISSED"}[*r.Met]
			}
		}
		val := human(r.Value) + " " + r.Unit
		if r.Name == "error" {
			val = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Section, r.Name, val, ceil, ratio, target, met)
	}
	tw.Flush()
	for _, r := range b.results {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s/%s: %s\n", r.Section, r.Name, r.Note)
		}
	}
}

func human(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func (b *bench) writeJSON(path string, started time.Time) error {
	host, _ := os.Hostname()
	doc := map[string]any{
		"started":  started.UTC().Format(time.RFC3339),
		"seconds":  time.Since(started).Seconds(),
		"host":     host,
		"cpus":     runtime.NumCPU(),
		"cpu":      harness.CPUModel(),
		"commit":   harness.Commit(),
		"go":       runtime.Version(),
		"results":  b.results,
		"sections": b.cfg.sections,
	}
	buf, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(buf, '\n'), 0o644)
}

// best returns the largest value.
func best(vs []float64) float64 {
	m := 0.0
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}
