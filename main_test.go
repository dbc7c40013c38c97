package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHelpExplainsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	err := dispatch([]string{"-help"}, io.Discard, &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	out := stderr.String()
	for _, want := range []string{"-target", "-mqtt.url", "-kafka.brokers", "-bridge.batch-size", "-processor.group",
		"-influx.url", "-cassandra.hosts", "-simulator.devices", "-detect.z", "SENSORFLOW_KAFKA_BROKERS"} {
		require.Contains(t, out, want)
	}
	for _, cmd := range []string{"check", "alerts", "query"} {
		stderr.Reset()
		require.ErrorIs(t, dispatch([]string{cmd, "-help"}, io.Discard, &stderr), flag.ErrHelp, cmd)
		require.Contains(t, stderr.String(), "Usage: sensorflow "+cmd)
	}
}

func TestFlagsHaveEnvFallback(t *testing.T) {
	t.Setenv("SENSORFLOW_KAFKA_BROKERS", "k1:9092,k2:9092")
	t.Setenv("SENSORFLOW_BRIDGE_BATCH_SIZE", "77")
	var c RunConfig
	fs := newFlagSet("", "", io.Discard)
	c.RegisterFlags(fs)
	require.NoError(t, parse(fs, []string{"-target", "bridge"}))
	require.Equal(t, "k1:9092,k2:9092", c.Kafka.Brokers)
	require.Equal(t, 77, c.Bridge.BatchSize)
	// Flag names are dotted kebab-case.
	fs.VisitAll(func(f *flag.Flag) {
		require.Regexp(t, `^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$`, f.Name)
		require.NotEmpty(t, f.Usage, f.Name)
	})
}

func TestSecretsHaveNoDefault(t *testing.T) {
	var c RunConfig
	fs := newFlagSet("", "", io.Discard)
	c.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "password") || strings.Contains(f.Name, "token") {
			require.Empty(t, f.DefValue, "%s must not have a default", f.Name)
		}
	})
}

func TestTargets(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"all", []string{"bridge", "processor", "simulator"}, false},
		{"bridge,processor", []string{"bridge", "processor"}, false},
		{" simulator ", []string{"simulator"}, false},
		{"bridge,nope", nil, true},
	}
	for _, tt := range tests {
		c := RunConfig{Targets: tt.in}
		got, err := c.targets()
		if tt.err {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		var names []string
		for _, n := range []string{"bridge", "processor", "simulator"} {
			if got[n] {
				names = append(names, n)
			}
		}
		require.Equal(t, tt.want, names)
	}
}

func TestUnknownCommand(t *testing.T) {
	require.ErrorContains(t, dispatch([]string{"frobnicate"}, io.Discard, io.Discard), "unknown command")
}

// With nothing to run but a failing config, Run reports the error instead
// of starting anything.
func TestRunRejectsInvalidConfig(t *testing.T) {
	var c RunConfig
	fs := newFlagSet("", "", io.Discard)
	c.RegisterFlags(fs)
	require.NoError(t, parse(fs, []string{"-target", "bridge", "-bridge.batch-size", "0", "-admin.addr", "127.0.0.1:0"}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Run(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorContains(t, err, "bridge.batch-size")
}

// Every flag is documented in the README that owns it.
func TestReadmesListEveryFlag(t *testing.T) {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	docs := map[string]string{
		"bridge.": read("bridge/README.md"), "simulator.": read("simulator/README.md"),
		"processor.": read("processor/README.md"), "influx.": read("processor/sink/README.md"),
		"cassandra.": read("processor/sink/README.md"), "detect.": read("processor/README.md"),
		"incidents.": read("processor/README.md"),
	}
	top := read("README.md") + read("deploy/README.md")
	var c DemoConfig // the services' flags and the demo's
	fs := newFlagSet("", "", io.Discard)
	c.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		doc, where := top, "README.md or deploy/README.md"
		for prefix, d := range docs {
			if strings.HasPrefix(f.Name, prefix) {
				doc, where = d, prefix
			}
		}
		require.Contains(t, doc, "`-"+f.Name+"`", "flag -%s is not documented (%s)", f.Name, where)
	})
}

// Secrets given through the environment or files never show up in -help,
// in logs (at debug level) or in errors, whatever the command.
func TestSecretsNeverShown(t *testing.T) {
	secrets := map[string]string{
		"SENSORFLOW_MQTT_PASSWORD":       "mqtt-Zq81secret",
		"SENSORFLOW_KAFKA_SASL_PASSWORD": "sasl-Zq82secret",
		"SENSORFLOW_CASSANDRA_PASSWORD":  "cass-Zq83secret",
		"SENSORFLOW_INFLUX_TOKEN":        "tok-Zq84secret",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	file := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(file, []byte("file-Zq85secret\n"), 0o600))
	secrets["file"] = "file-Zq85secret"
	// Nothing listens on port 1: every connection fails and is logged.
	unreachable := []string{"-mqtt.url=tcp://127.0.0.1:1", "-kafka.brokers=127.0.0.1:1", "-cassandra.hosts=127.0.0.1:1",
		"-influx.url=http://127.0.0.1:1", "-kafka.sasl.mechanism=PLAIN", "-kafka.sasl.username=u", "-cassandra.username=u",
		"-mqtt.username=u", "-log.level=debug", "-admin.addr=127.0.0.1:0", "-dashboard.addr="}
	runs := [][]string{
		{"-help"},
		{"check", "-help"},
		append([]string{"check", "-timeout=2s"}, unreachable...),
		append([]string{"-target=all", "-mqtt.password-file=" + file}, unreachable...),
	}
	for _, args := range runs {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		done := make(chan error, 1)
		go func() { done <- dispatchContext(ctx, args, &out, &out) }()
		err := <-done
		cancel()
		text := out.String()
		if err != nil {
			text += err.Error()
		}
		require.NotEmpty(t, text, "%v printed nothing", args)
		switch args[0] {
		case "check":
			if len(args) > 2 {
				require.Contains(t, text, "127.0.0.1:1", "%v did not try the servers", args)
			}
		case "-target=all":
			require.Contains(t, text, "retrying", "%v did not try the servers", args)
		}
		for name, s := range secrets {
			require.NotContains(t, text, s, "%s leaked by %v", name, args)
		}
	}
}

// -validate checks a configuration as start-up does and contacts nothing.
func TestValidateFlag(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, dispatchContext(context.Background(), []string{"-target=bridge,processor", "-validate", "-kafka.brokers=127.0.0.1:1"}, &out, io.Discard))
	require.Equal(t, "configuration ok: targets=bridge,processor\n", out.String())
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-target=bridge", "-bridge.batch-size=0", "-validate"}, "bridge.batch-size"},
		{[]string{"-target=bridge", "-bridge.gogc=-1", "-validate"}, "bridge.gogc"},
		{[]string{"-target=processor", "-influx.url=bad", "-validate"}, "influx.url"},
		{[]string{"-target=simulator", "-log.format=xml", "-validate"}, "-log.format"},
		{[]string{"-target=nothing", "-validate"}, "-target"},
	} {
		err := dispatchContext(context.Background(), tt.args, io.Discard, io.Discard)
		require.ErrorContains(t, err, "invalid configuration", tt.args)
		require.ErrorContains(t, err, tt.want, tt.args)
	}
}
