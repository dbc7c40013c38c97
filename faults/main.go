// Command faults runs Sensorflow through failures against the real servers
// and checks that every reading a device got acknowledged is stored, in
// InfluxDB and in Cassandra, exactly once: `make faults`.
//
// Each scenario runs its own deployment (topics, MQTT prefix, consumer
// groups, keyspace, device ids) of the real binary's processes: a
// processor, a bridge and a simulator publishing at a steady rate with an
// acknowledgement log. After warming up, the scenario's fault is injected
// and repaired; a probe reading then measures the time until the pipeline
// caught up. The simulator stops, the stores are read back reading by
// reading and compared with the acknowledgement log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sensorflow/sensorflow/internal/testenv"
)

type config struct {
	bin       string
	out       string
	services  string
	only      string
	devices   int
	interval  time.Duration
	warmup    time.Duration
	after     time.Duration
	outage    time.Duration
	settle    time.Duration
	bpSettle  time.Duration
	bpRate    int
	bpOutage  time.Duration
	memBudget int64
}

type faults struct {
	cfg  config
	srv  testenv.Servers
	id   string
	log  *slog.Logger
	rows []row
}

func main() {
	var cfg config
	fs := flag.NewFlagSet("faults", flag.ExitOnError)
	fs.StringVar(&cfg.bin, "bin", "bin/sensorflow", "The sensorflow binary the services run from.")
	fs.StringVar(&cfg.out, "out", "out/faults", "Directory for the services' logs, the acknowledgement logs and faults.txt.")
	fs.StringVar(&cfg.services, "services", "deploy/local/services.sh", "Script that stops and starts the local servers (Kafka, Mosquitto, InfluxDB, Cassandra).")
	fs.StringVar(&cfg.only, "scenarios", "", "Comma-separated scenario names to run (empty: all): "+strings.Join(scenarioNames(), ", ")+".")
	fs.IntVar(&cfg.devices, "devices", 100, "Simulated devices per scenario.")
	fs.DurationVar(&cfg.interval, "interval", 100*time.Millisecond, "Interval between two readings of one device: devices ÷ interval is the steady rate (1,000 readings/s by default).")
	fs.DurationVar(&cfg.warmup, "warmup", 5*time.Second, "Steady publishing before the fault.")
	fs.DurationVar(&cfg.after, "after", 5*time.Second, "Publishing after the pipeline caught up, before the simulator stops.")
	fs.DurationVar(&cfg.outage, "outage", 30*time.Second, "How long InfluxDB or Cassandra stays stopped.")
	fs.DurationVar(&cfg.settle, "settle", 4*time.Minute, "Longest wait for the stores to hold every acknowledged reading.")
	fs.DurationVar(&cfg.bpSettle, "backpressure.settle", 8*time.Minute, "Longest wait for the stores to hold the backlog of a backpressure scenario (about 400,000 readings; 2 to 3 minutes here).")
	fs.IntVar(&cfg.bpRate, "backpressure.rate", 5000, "Readings/s of the backpressure scenario.")
	fs.DurationVar(&cfg.bpOutage, "backpressure.outage", 60*time.Second, "How long the backpressure scenarios keep Kafka or InfluxDB stopped; the load stops when the outage ends.")
	fs.Int64Var(&cfg.memBudget, "memory-budget", 256, "Peak RSS budget of the bridge and of the processor in the backpressure scenario, MiB.")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./faults [flags]\n\nRuns fault scenarios against the local servers of `make services` (loopback only; the servers are stopped and restarted) and prints, per scenario: readings published and acknowledged, stored in InfluxDB and in Cassandra, lost, duplicates and time to recover. Exits 1 if any acknowledged reading is lost, any alert id is duplicated, or the memory budget is exceeded.\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	f := &faults{
		cfg: cfg,
		srv: testenv.Get(),
		id:  testenv.Unique("flt"),
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	err := f.run(ctx)
	table, terr := os.Create(filepath.Join(cfg.out, "faults.txt"))
	if terr == nil {
		f.print(io.MultiWriter(os.Stdout, table))
		table.Close()
	} else {
		f.print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
}

func (f *faults) run(ctx context.Context) error {
	var only []string
	if f.cfg.only != "" {
		only = strings.Split(f.cfg.only, ",")
		for _, n := range only {
			if !slices.Contains(scenarioNames(), n) {
				return fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(scenarioNames(), ", "))
			}
		}
	}
	var failed []string
	for _, sc := range scenarios(f.cfg) {
		if only != nil && !slices.Contains(only, sc.name) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.log.Info("scenario", "name", sc.name, "what", sc.what)
		t := time.Now()
		r, err := f.scenario(ctx, sc)
		r.scenario, r.what = sc.name, sc.what
		if err != nil {
			r.err = err.Error()
		}
		if msg := r.verdict(sc, f.cfg); msg != "" {
			failed = append(failed, sc.name+": "+msg)
			r.failed = msg
		}
		f.rows = append(f.rows, r)
		f.log.Info("scenario done", "name", sc.name, "took", time.Since(t).Round(time.Second), "lost", r.lostInflux+r.lostCassandra, "err", r.err, "failed", r.failed)
		// Leave every server up for the next scenario.
		if err := f.services(ctx, "up"); err != nil {
			return err
		}
	}
	if failed != nil {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}
