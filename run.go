package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/bridge"
	"github.com/sensorflow/sensorflow/dashboard"
	"github.com/sensorflow/sensorflow/internal/admin"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/processor"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/simulator"
)

// This file wires the services of one process: flags, sinks, admin server,
// signals and the ordered drain.

// RunConfig holds the flags of the services run.
type RunConfig struct {
	Targets         string
	AdminAddr       string
	AdminPprof      bool
	LogFormat       string
	LogLevel        string
	Health          bool
	ValidateOnly    bool
	ShutdownTimeout time.Duration
	MQTT            mqttx.Config
	Kafka           kafkax.Config
	TopicPrefix     string
	DashboardAddr   string
	DashboardPoints int
	DashboardSeries int
	Simulator       simulator.Config
	Bridge          bridge.Config
	Processor       processor.Config
	Influx          sink.InfluxConfig
	Cassandra       sink.CassandraConfig

	// Set by the demo: a pre-filled dashboard hub and extra sinks.
	hub        *dashboard.Hub
	extraSinks []sink.Spec
}

// RegisterFlags registers every flag of the services run.
func (c *RunConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Targets, "target", "all", "Services to run: all, or a comma list of simulator, bridge, processor.")
	fs.StringVar(&c.AdminAddr, "admin.addr", ":9100", "Address of the admin HTTP server (/metrics, /healthz, /readyz).")
	fs.BoolVar(&c.AdminPprof, "admin.pprof", false, "Serve Go's profiles under /debug/pprof/ on the admin server.")
	fs.StringVar(&c.LogFormat, "log.format", "json", "Log format: json or text.")
	fs.StringVar(&c.LogLevel, "log.level", "info", "Log level: debug, info, warn or error.")
	fs.BoolVar(&c.Health, "health", false, "Probe the running process's /readyz on -admin.addr and exit 0 if ready (container health check).")
	fs.BoolVar(&c.ValidateOnly, "validate", false, "Check the flags and environment of the chosen targets as start-up does (rules file and sinks included), print the result and exit; contacts no server.")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "Time each service has to drain on SIGTERM.")
	fs.StringVar(&c.TopicPrefix, "mqtt.topic-prefix", "sensorflow", "First level of every MQTT topic.")
	fs.StringVar(&c.DashboardAddr, "dashboard.addr", ":8080", "Address of the processor's read-only web dashboard (empty: off).")
	fs.IntVar(&c.DashboardPoints, "dashboard.points", 600, "Recent points per series the dashboard keeps in memory.")
	fs.IntVar(&c.DashboardSeries, "dashboard.max-series", 20000, "Most series the dashboard keeps (memory bound).")
	c.MQTT.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	c.Simulator.RegisterFlags(fs)
	c.Bridge.RegisterFlags(fs)
	c.Processor.RegisterFlags(fs)
	c.Influx.RegisterFlags(fs)
	c.Cassandra.RegisterFlags(fs)
}

// sinks returns the processor's sinks in the order they are opened: the
// enabled stores, the demo's extra sinks, then the dashboard hub (nil when
// the dashboard is off). Adding a sink means adding it here and in its own
// file under processor/sink, nothing else.
func (c *RunConfig) sinks(log *slog.Logger) ([]sink.Spec, *dashboard.Hub, error) {
	var specs []sink.Spec
	if c.Influx.Enabled {
		if err := c.Influx.Validate(); err != nil {
			return nil, nil, err
		}
		specs = append(specs, c.Influx.Spec(log))
	}
	if c.Cassandra.Enabled {
		if err := c.Cassandra.Validate(); err != nil {
			return nil, nil, err
		}
		specs = append(specs, c.Cassandra.Spec(log))
	}
	specs = append(specs, c.extraSinks...)
	var hub *dashboard.Hub
	if c.DashboardAddr != "" {
		if hub = c.hub; hub == nil {
			hub = dashboard.NewHub(c.DashboardPoints, c.DashboardSeries)
		}
		specs = append(specs, sink.Fixed("dashboard", hub))
	}
	return specs, hub, nil
}

func (c *RunConfig) targets() (map[string]bool, error) {
	out := map[string]bool{}
	for _, t := range strings.Split(c.Targets, ",") {
		switch t = strings.TrimSpace(t); t {
		case "all":
			out["simulator"], out["bridge"], out["processor"] = true, true, true
		case "simulator", "bridge", "processor":
			out[t] = true
		default:
			return nil, fmt.Errorf("-target %q: want all or a comma list of simulator, bridge, processor", t)
		}
	}
	return out, nil
}

type service interface {
	Run(ctx context.Context) error
}

type named struct {
	name string
	svc  service
}

// build validates cfg and constructs the selected services in pipeline
// order, registering their metrics and readiness checks with adm. It
// connects to nothing. The dashboard's server is nil when it is off.
func build(cfg RunConfig, log *slog.Logger, adm *admin.Server) ([]named, *http.Server, error) {
	targets, err := cfg.targets()
	if err != nil {
		return nil, nil, err
	}
	reg := adm.Registry()
	var svcs []named
	var dash *http.Server
	if targets["simulator"] {
		c := cfg.Simulator
		c.MQTT, c.TopicPrefix = cfg.MQTT, cfg.TopicPrefix
		s, err := simulator.New(c, log.With("component", "simulator"), reg)
		if err != nil {
			return nil, nil, err
		}
		svcs = append(svcs, named{"simulator", s})
	}
	if targets["bridge"] {
		c := cfg.Bridge
		c.MQTT, c.Kafka, c.TopicPrefix = cfg.MQTT, cfg.Kafka, cfg.TopicPrefix
		b, err := bridge.New(c, log.With("component", "bridge"), reg)
		if err != nil {
			return nil, nil, err
		}
		adm.Ready("bridge", b.Ready)
		svcs = append(svcs, named{"bridge", b})
	}
	if targets["processor"] {
		plog := log.With("component", "processor")
		c := cfg.Processor
		c.Kafka = cfg.Kafka
		var hub *dashboard.Hub
		if c.Sinks, hub, err = cfg.sinks(plog); err != nil {
			return nil, nil, fmt.Errorf("processor config: %w", err)
		}
		p, err := processor.New(c, plog, reg)
		if err != nil {
			return nil, nil, err
		}
		if hub != nil {
			dash = &http.Server{Addr: cfg.DashboardAddr, Handler: hub.Handler(), ReadHeaderTimeout: 5 * time.Second}
		}
		adm.Ready("processor", p.Ready)
		svcs = append(svcs, named{"processor", p})
	}
	return svcs, dash, nil
}

// Validate checks the flags of the selected services as start-up does
// (every service's Validate, the rules file, the sinks' settings) without
// connecting to anything.
func (c *RunConfig) Validate() error {
	if _, err := newLogger(c.LogFormat, c.LogLevel, io.Discard); err != nil {
		return err
	}
	_, _, err := build(*c, slog.New(slog.DiscardHandler), admin.New(c.AdminAddr, slog.New(slog.DiscardHandler)))
	return err
}

// Run starts the selected services and the admin server, and drains them in
// pipeline order (simulator, bridge, processor) when ctx ends or one fails.
func Run(ctx context.Context, cfg RunConfig, log *slog.Logger) error {
	adm := admin.New(cfg.AdminAddr, log)
	if cfg.AdminPprof {
		adm.EnablePprof()
	}
	svcs, dash, err := build(cfg, log, adm)
	if err != nil {
		return err
	}
	var bridgeReady func() error
	for _, s := range svcs {
		if s.name == "bridge" {
			bridgeReady = s.svc.(*bridge.Bridge).Ready
		}
	}
	if len(svcs) == 1 && bridgeReady != nil && cfg.Bridge.GOGC > 0 && os.Getenv("GOGC") == "" {
		// A bridge alone keeps little alive (its queue and the batch in
		// hand), so collecting less often costs a few tens of MiB and
		// saves CPU on every message.
		debug.SetGCPercent(cfg.Bridge.GOGC)
	}
	addr, err := adm.Listen()
	if err != nil {
		return err
	}
	if dash != nil {
		ln, err := net.Listen("tcp", dash.Addr)
		if err != nil {
			return fmt.Errorf("dashboard listening on %s: %w", dash.Addr, err)
		}
		go func() { _ = dash.Serve(ln) }()
		defer dash.Close()
		log.Info("dashboard serving", "addr", ln.Addr().String())
	}
	log.Info("sensorflow starting", "version", version(), "targets", cfg.Targets, "admin", addr.String())

	admCtx, admStop := context.WithCancel(context.Background())
	admDone := make(chan error, 1)
	go func() { admDone <- adm.Serve(admCtx) }()

	type result struct {
		name string
		err  error
	}
	done := make(chan result, len(svcs))
	cancels := make([]context.CancelFunc, len(svcs))
	for i, s := range svcs {
		sctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		var gate func() error
		if s.name == "simulator" && bridgeReady != nil {
			// MQTT drops what nobody subscribed to yet: publish only once
			// the bridge's subscription is confirmed.
			gate = bridgeReady
		}
		go func() {
			if gate != nil && !waitReady(sctx, gate) {
				done <- result{s.name, nil}
				return
			}
			done <- result{s.name, s.svc.Run(sctx)}
		}()
	}

	var firstErr error
	finished := map[string]bool{}
	// A service that finishes cleanly (the simulator after -simulator.count)
	// leaves the others running; one that fails stops the process.
wait:
	for len(finished) < len(svcs) {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "reason", "signal")
			break wait
		case r := <-done:
			finished[r.name] = true
			if r.err != nil {
				firstErr = fmt.Errorf("%s: %w", r.name, r.err)
				log.Error("service failed, shutting down", "service", r.name, "err", r.err)
				break wait
			}
			log.Info("service finished", "service", r.name)
		}
	}
	adm.ShuttingDown()
	// Drain in pipeline order: stop intake first, then what it feeds.
	for i, s := range svcs {
		cancels[i]()
		if finished[s.name] {
			continue
		}
		timer := time.NewTimer(cfg.ShutdownTimeout)
	drain:
		for {
			select {
			case r := <-done:
				finished[r.name] = true
				if r.err != nil && !errors.Is(r.err, context.Canceled) && firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", r.name, r.err)
				}
				if r.name == s.name {
					break drain
				}
			case <-timer.C:
				if firstErr == nil {
					firstErr = fmt.Errorf("%s did not stop within %s", s.name, cfg.ShutdownTimeout)
				}
				break drain
			}
		}
		timer.Stop()
	}
	admStop()
	<-admDone
	log.Info("sensorflow stopped")
	return firstErr
}

// waitReady polls ready until it passes (true) or ctx ends (false).
func waitReady(ctx context.Context, ready func() error) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for ready() != nil {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log.level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log.format %q: want json or text", format)
}

func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
		if bi.Main.Version != "" {
			return bi.Main.Version
		}
	}
	return "dev"
}
