package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gocql/gocql"

	"github.com/sensorflow/sensorflow/internal/harness"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// scenario is one failure, injected and repaired by inject while the
// simulator publishes.
type scenario struct {
	name     string
	what     string
	devices  int           // 0: -devices
	interval time.Duration // 0: -interval
	memory   bool          // check the memory budget
	shared   bool          // bridges in a shared subscription
	// grouped: an outage of the whole fleet, or a rebalance; the alerts
	// users get must be at most one incident per site and no device gap
	// alert the simulator's injected dropouts do not explain.
	grouped bool
	// sameAlerts: the processor restarts or hands partitions over; with
	// its detector state checkpointed, the device alerts raised must equal
	// those of one uninterrupted detector over the same readings.
	sameAlerts bool
	inject     func(ctx context.Context, r *run) error
}

func scenarioNames() []string {
	var out []string
	for _, s := range scenarios(config{}) {
		out = append(out, s.name)
	}
	return out
}

func scenarios(cfg config) []scenario {
	return []scenario{
		{name: "kill-bridge", grouped: true, what: "kill -9 the bridge, restart it", inject: func(ctx context.Context, r *run) error {
			r.bridge.Kill()
			<-r.bridge.Done()
			time.Sleep(time.Second)
			return r.startBridge(ctx)
		}},
		{name: "kill-processor", sameAlerts: true, what: "kill -9 the processor, restart it", inject: func(ctx context.Context, r *run) error {
			r.processor.Kill()
			<-r.processor.Done()
			time.Sleep(time.Second)
			return r.startProcessor(ctx)
		}},
		{name: "restart-kafka", grouped: true, what: "stop Kafka (SIGTERM), start it again", inject: func(ctx context.Context, r *run) error {
			return r.restart(ctx, "kafka", 0)
		}},
		{name: "restart-mosquitto", grouped: true, what: "stop Mosquitto (SIGTERM), start it again", inject: func(ctx context.Context, r *run) error {
			return r.restart(ctx, "mosquitto", 0)
		}},
		{name: "stop-influxdb", what: fmt.Sprintf("InfluxDB stopped for %s", cfg.outage), inject: func(ctx context.Context, r *run) error {
			return r.restart(ctx, "influxdb", cfg.outage)
		}},
		{name: "stop-cassandra", what: fmt.Sprintf("Cassandra stopped for %s", cfg.outage), inject: func(ctx context.Context, r *run) error {
			return r.restart(ctx, "cassandra", cfg.outage)
		}},
		{name: "scale-out-in", grouped: true, sameAlerts: true, what: "a second bridge (shared subscription) and processor join for 15 s, then leave (SIGTERM)", shared: true, inject: func(ctx context.Context, r *run) error {
			b2, err := r.start(ctx, "bridge-2", r.bridgeArgs("-2"))
			if err != nil {
				return err
			}
			p2, err := r.start(ctx, "processor-2", r.processorArgs())
			if err != nil {
				return err
			}
			time.Sleep(15 * time.Second)
			if err := b2.Stop(); err != nil {
				return fmt.Errorf("second bridge: %w", err)
			}
			if err := p2.Stop(); err != nil {
				return fmt.Errorf("second processor: %w", err)
			}
			return nil
		}},
		{name: "sigterm-restart", sameAlerts: true, what: "SIGTERM and restart the bridge, then the processor", inject: func(ctx context.Context, r *run) error {
			if err := r.bridge.Stop(); err != nil {
				return fmt.Errorf("bridge did not exit cleanly on SIGTERM: %w", err)
			}
			if err := r.startBridge(ctx); err != nil {
				return err
			}
			if err := r.processor.Stop(); err != nil {
				return fmt.Errorf("processor did not exit cleanly on SIGTERM: %w", err)
			}
			return r.startProcessor(ctx)
		}},
		{name: "backpressure-kafka", what: fmt.Sprintf("Kafka stopped for %s at %d readings/s (the broker holds the backlog)", cfg.bpOutage, cfg.bpRate),
			devices: cfg.bpRate / 10, interval: 100 * time.Millisecond, memory: true,
			inject: func(ctx context.Context, r *run) error {
				return r.restart(ctx, "kafka", cfg.bpOutage)
			}},
		{name: "backpressure", what: fmt.Sprintf("InfluxDB stopped for %s at %d readings/s (Kafka holds the backlog)", cfg.bpOutage, cfg.bpRate),
			devices: cfg.bpRate / 10, interval: 100 * time.Millisecond, memory: true,
			inject: func(ctx context.Context, r *run) error {
				return r.restart(ctx, "influxdb", cfg.bpOutage)
			}},
	}
}

// run is one scenario's deployment.
type run struct {
	f        *faults
	id       string
	dir      string
	keyspace string
	devices  int
	interval time.Duration
	shared   bool
	memory   bool // a backpressure scenario: the longer settle applies
	// sameAlerts: compare the device alerts with an uninterrupted detector
	sameAlerts bool

	bridge, processor, sim *harness.Proc
	n                      int

	mu        sync.Mutex
	live      []*harness.Proc
	peakBr    int64
	peakProc  int64
	stopWatch chan struct{}
}

func (f *faults) scenario(ctx context.Context, sc scenario) (row, error) {
	r := &run{
		f:         f,
		id:        f.id + "-" + sc.name,
		dir:       filepath.Join(f.cfg.out, sc.name),
		devices:   f.cfg.devices,
		interval:  f.cfg.interval,
		stopWatch: make(chan struct{}),
	}
	if sc.devices > 0 {
		r.devices, r.interval = sc.devices, sc.interval
	}
	r.keyspace = strings.ReplaceAll(r.id, "-", "_")
	r.shared, r.memory, r.sameAlerts = sc.shared, sc.memory, sc.sameAlerts
	var res row
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return res, err
	}
	defer r.cleanup()
	go r.watchMemory()

	if err := r.startProcessor(ctx); err != nil {
		return res, err
	}
	if err := r.startBridge(ctx); err != nil {
		return res, err
	}
	sim, err := r.start(ctx, "simulator", []string{
		"-target=simulator",
		"-mqtt.url=" + f.srv.MQTTURL,
		"-mqtt.topic-prefix=" + r.id,
		fmt.Sprintf("-simulator.devices=%d", r.devices),
		fmt.Sprintf("-simulator.interval=%s", r.interval),
		"-simulator.device-prefix=" + r.id + "-dev-",
		"-simulator.site-prefix=" + r.id + "-site-",
		"-simulator.client-prefix=" + r.id + "-sim",
		"-simulator.ack-log=" + filepath.Join(r.dir, "acks.log"),
		"-simulator.ground-truth=" + filepath.Join(r.dir, "truth.jsonl"),
		"-simulator.seed=3",
	})
	if err != nil {
		return res, err
	}
	r.sim = sim

	time.Sleep(f.cfg.warmup)
	if err := sc.inject(ctx, r); err != nil {
		return res, fmt.Errorf("injecting the fault: %w", err)
	}
	recovered := time.Now()
	if !sc.memory {
		res.recovery, err = r.probe(ctx)
		if err != nil {
			r.dumpMetrics()
			return res, fmt.Errorf("probe after the fault: %w", err)
		}
		f.log.Info("caught up", "scenario", sc.name, "after", res.recovery.Round(10*time.Millisecond), "since", time.Since(recovered).Round(time.Second))
		time.Sleep(f.cfg.after)
	}
	// In a backpressure scenario the load ends with the outage: what is
	// measured is the backlog it left, drained (with both stores and the
	// load generator on the same two cores, the pipeline sustains less
	// than the outage's rate, so a probe behind a still-growing backlog
	// would never come through). Recovery is then the time until every
	// acknowledged reading is in both stores.
	if err := r.sim.Stop(); err != nil {
		return res, fmt.Errorf("simulator: %w", err)
	}
	res.published, _ = r.simCounter()
	if err := r.verify(ctx, &res); err != nil {
		return res, err
	}
	if sc.memory && !res.storedAt.IsZero() {
		res.recovery = res.storedAt.Sub(recovered)
		f.log.Info("backlog stored", "scenario", sc.name, "after", res.recovery.Round(time.Second))
	}
	r.mu.Lock()
	res.peakBridge, res.peakProcessor = r.peakBr, r.peakProc
	r.mu.Unlock()
	return res, nil
}

func (r *run) kafkaArgs() []string {
	return []string{
		"-kafka.brokers=" + r.f.srv.KafkaBrokers,
		"-kafka.readings-topic=" + r.id + ".readings",
		"-kafka.alerts-topic=" + r.id + ".alerts",
		"-kafka.deadletter-topic=" + r.id + ".deadletter",
	}
}

func (r *run) bridgeArgs(suffix string) []string {
	args := append(r.kafkaArgs(),
		"-target=bridge",
		"-mqtt.url="+r.f.srv.MQTTURL,
		"-mqtt.topic-prefix="+r.id,
		"-bridge.client-id="+r.id+"-bridge"+suffix,
		"-bridge.alerts-group="+r.id+"-alerts",
	)
	if r.shared {
		args = append(args, "-bridge.share-group="+r.id)
	}
	return args
}

func (r *run) processorArgs() []string {
	return append(r.kafkaArgs(),
		"-target=processor",
		"-processor.group="+r.id+"-processor",
		"-influx.url="+r.f.srv.InfluxURL,
		"-influx.bucket="+r.f.srv.InfluxBucket,
		"-cassandra.hosts="+r.f.srv.CassandraHosts,
		"-cassandra.keyspace="+r.keyspace,
	)
}

func (r *run) startBridge(ctx context.Context) error {
	p, err := r.start(ctx, "bridge", r.bridgeArgs(""))
	if err == nil {
		r.bridge = p
	}
	return err
}

func (r *run) startProcessor(ctx context.Context) error {
	p, err := r.start(ctx, "processor", r.processorArgs())
	if err == nil {
		r.processor = p
	}
	return err
}

// start runs a service process, logging to <dir>/<name>-<n>.log.
func (r *run) start(ctx context.Context, name string, args []string) (*harness.Proc, error) {
	r.n++
	p, err := harness.Start(ctx, r.f.cfg.bin, r.dir, fmt.Sprintf("%02d-%s", r.n, name), args...)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.live = append(r.live, p)
	r.mu.Unlock()
	return p, nil
}

// watchMemory samples the peak RSS of every bridge and processor process.
func (r *run) watchMemory() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stopWatch:
			return
		case <-t.C:
		}
		r.mu.Lock()
		for _, p := range r.live {
			_, peak, err := p.Memory()
			if err != nil {
				continue
			}
			switch name := filepath.Base(p.Log()); {
			case strings.Contains(name, "bridge"):
				r.peakBr = max(r.peakBr, peak)
			case strings.Contains(name, "processor"):
				r.peakProc = max(r.peakProc, peak)
			}
		}
		r.mu.Unlock()
	}
}

func (r *run) cleanup() {
	close(r.stopWatch)
	r.mu.Lock()
	live := r.live
	r.mu.Unlock()
	for _, p := range live {
		select {
		case <-p.Done():
		default:
			if err := p.Stop(); err != nil {
				r.f.log.Warn("stopping", "log", p.Log(), "err", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = r.f.services(ctx, "up")
	if cl, err := r.f.kafka().Client(); err == nil {
		_, _ = cl.DeleteTopics(ctx, deleteTopics(r.id))
	}
	if s, err := r.f.cassandra(""); err == nil {
		_ = s.Query(`DROP KEYSPACE IF EXISTS ` + r.keyspace).Exec()
		s.Close()
	}
}

// restart stops a server, waits, and starts it again.
func (r *run) restart(ctx context.Context, service string, down time.Duration) error {
	if err := r.f.services(ctx, "down", service); err != nil {
		return err
	}
	time.Sleep(down)
	return r.f.services(ctx, "up", service)
}

func (f *faults) services(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, f.cfg.services, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", f.cfg.services, strings.Join(args, " "), err, out)
	}
	return nil
}

// simCounter reads how many readings the simulator published, from the
// summary line it logs when it stops.
func (r *run) simCounter() (published int64, err error) {
	b, err := os.ReadFile(r.sim.Log())
	if err != nil {
		return 0, err
	}
	// The summary line: "simulator stopped ... published=N acked=M ...".
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, " published="); i >= 0 && strings.Contains(line, "acked=") {
			var n int64
			if _, err := fmt.Sscanf(line[i+len(" published="):], "%d", &n); err == nil {
				published = n
			}
		}
	}
	return published, nil
}

// probe publishes one reading of a device of its own and returns how long
// it took to be stored in InfluxDB and Cassandra: the time the pipeline
// needs to catch up after the fault.
func (r *run) probe(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	mc := mqttx.Config{URL: r.f.srv.MQTTURL, KeepAlive: 30 * time.Second, ConnectWait: 10 * time.Second}
	o, err := mc.Options(r.id+"-probe", true)
	if err != nil {
		return 0, err
	}
	c := mqtt.NewClient(o)
	if err := mqttx.Wait(c.Connect(), time.Minute); err != nil {
		return 0, err
	}
	defer c.Disconnect(100)
	dev, site := r.id+"-probe", r.id+"-site-p"
	ts := time.Now().UTC().Truncate(time.Millisecond)
	payload := fmt.Sprintf(`{"ts":%q,"metrics":{"temperature":1}}`, ts.Format(time.RFC3339Nano))
	if err := mqttx.Wait(c.Publish(sensor.Topics{Prefix: r.id}.Telemetry(site, dev), 1, false, payload), time.Minute); err != nil {
		return 0, err
	}
	sess, err := r.f.cassandra(r.keyspace)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	deadline := time.Now().Add(r.f.cfg.settle)
	inInflux, inCassandra := false, false
	for !inInflux || !inCassandra {
		if !inInflux {
			inInflux = r.f.influxHas(ctx, dev, ts)
		}
		if !inCassandra {
			var n int
			err := sess.Query(`SELECT count(*) FROM readings WHERE device_id = ? AND metric = ? AND day = ? AND ts = ?`,
				dev, "temperature", ts.Truncate(24*time.Hour), ts).Consistency(gocql.One).Scan(&n)
			inCassandra = err == nil && n == 1
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the probe was not stored within %s (InfluxDB %t, Cassandra %t)", r.f.cfg.settle, inInflux, inCassandra)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

// dumpMetrics saves every live service's metrics beside its log, for a
// scenario that went wrong.
func (r *run) dumpMetrics() {
	r.mu.Lock()
	live := append([]*harness.Proc(nil), r.live...)
	r.mu.Unlock()
	for _, p := range live {
		resp, err := http.Get("http://" + p.Admin() + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(strings.TrimSuffix(p.Log(), ".log")+".metrics.txt", b, 0o644)
	}
}
