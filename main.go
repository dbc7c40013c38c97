// Command sensorflow is Sensorflow's one binary: the simulator, the bridge and
// the processor (chosen with -target), and the tools around them.
//
//	sensorflow demo                                                everything in one process, nothing to install
//	sensorflow [-target all|simulator,bridge,processor] [flags]   run services
//	sensorflow alerts [flags]                                      follow the alert stream
//	sensorflow query -device D -metric M -from T1 -to T2           read the Cassandra archive
//	sensorflow check [flags]                                       check every server answers
//	sensorflow version
//
// Every flag can also be set through the environment: -kafka.brokers is
// SENSORFLOW_KAFKA_BROKERS. `sensorflow -help` lists the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"

	"github.com/sensorflow/sensorflow/cli"
	"github.com/sensorflow/sensorflow/internal/admin"
)

const envPrefix = "SENSORFLOW"

func main() {
	if err := dispatch(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sensorflow:", err)
		os.Exit(1)
	}
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return dispatchContext(ctx, args, stdout, stderr)
}

// dispatchContext runs the command of args until it ends or ctx does.
func dispatchContext(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "demo":
			var c DemoConfig
			fs := newFlagSet("demo", demoUsage, stderr)
			c.RegisterFlags(fs)
			if err := parse(fs, args[1:]); err != nil {
				return err
			}
			log, err := newLogger(c.Run.LogFormat, c.Run.LogLevel, stderr)
			if err != nil {
				return err
			}
			return Demo(ctx, c, log, stdout)
		case "check":
			var c cli.CheckConfig
			fs := newFlagSet("check", "Checks that every server answers its own protocol, with the clients Sensorflow uses.", stderr)
			c.RegisterFlags(fs)
			if err := parse(fs, args[1:]); err != nil {
				return err
			}
			return cli.Check(ctx, c, stdout)
		case "alerts":
			var c cli.AlertsConfig
			fs := newFlagSet("alerts", "Follows the alert stream from Kafka (default) or MQTT and prints it.", stderr)
			c.RegisterFlags(fs)
			if err := parse(fs, args[1:]); err != nil {
				return err
			}
			return cli.Alerts(ctx, c, stdout)
		case "query":
			var c cli.QueryConfig
			fs := newFlagSet("query", "Reads a device's metric back from the Cassandra archive as a table, CSV or JSON lines.", stderr)
			c.RegisterFlags(fs)
			if err := parse(fs, args[1:]); err != nil {
				return err
			}
			return cli.Query(ctx, c, stdout)
		case "replay":
			var c cli.ReplayConfig
			fs := newFlagSet("replay", replayUsage, stderr)
			c.RegisterFlags(fs)
			if err := parse(fs, args[1:]); err != nil {
				return err
			}
			c.Stderr = stderr
			return cli.Replay(c, os.Stdin, stdout)
		case "version":
			fmt.Fprintln(stdout, "sensorflow", version())
			return nil
		case "run":
			args = args[1:]
		default:
			return fmt.Errorf("unknown command %q (want demo, run, alerts, query, replay, check or version; see -help)", args[0])
		}
	}
	var cfg RunConfig
	fs := newFlagSet("", runUsage, stderr)
	cfg.RegisterFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.ValidateOnly {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("invalid configuration: %w", err)
		}
		fmt.Fprintf(stdout, "configuration ok: targets=%s\n", cfg.Targets)
		return nil
	}
	if cfg.Health {
		return admin.Probe("http://"+localAddr(cfg.AdminAddr)+"/readyz", 3*time.Second)
	}
	log, err := newLogger(cfg.LogFormat, cfg.LogLevel, stderr)
	if err != nil {
		return err
	}
	return Run(ctx, cfg, log)
}

const replayUsage = `Runs the processor's detector over a CSV history and writes one row per
input row, in order. The same code, flags and rules as the processor:
backtest rules on history before deploying them.

One series (header timestamp,value; timestamps like 2014-04-01 00:00:00 or
RFC 3339): writes timestamp,value,anomaly_score,alert, the anomaly score in
[0,1] and alert 1 where the live processor would have an alert open.

One device (a timestamp column, named timestamp, datetime, time, _time or
ts, and one column per metric, separated by , or ;, as a SKAB file or a
pivoted InfluxDB export): writes timestamp, each metric's score,
device_score, alert, alert_kind and alert_metrics. -ignore names columns
that are not metrics.

A row whose timestamp repeats or steps back is scored in file order, as the
live processor scores a late reading; the file is never refused for it.

  sensorflow replay -input history.csv -output scored.csv -rules rules.yaml
  sensorflow replay -input pump.csv -ignore anomaly,changepoint`

const runUsage = `Runs Sensorflow services in this process.

  sensorflow -target=all                         simulator, bridge and processor
  sensorflow -target=bridge -mqtt.url tcp://broker:1883 -kafka.brokers kafka:9092
  sensorflow -target=processor -influx.url http://influxdb:8086 -cassandra.hosts cassandra

Other commands: sensorflow demo | alerts | query | replay | check | version (each with -help).
Every flag may be set in the environment: -kafka.brokers is SENSORFLOW_KAFKA_BROKERS.`

func newFlagSet(name, doc string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sensorflow "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sensorflow %s[flags]\n\n%s\n\nFlags:\n", strings.TrimSpace(name+" "), doc)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	return ff.Parse(fs, args, ff.WithEnvVarPrefix(envPrefix))
}
