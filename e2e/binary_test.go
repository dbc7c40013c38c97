package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// buildBinary builds the sensorflow binary once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sensorflow-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sensorflow")
	out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func metricValue(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestBinaryAllTargetsAndGracefulShutdown(t *testing.T) {
	s := newStack(t)
	bin, err := buildBinary()
	require.NoError(t, err)
	admin := freeAddr(t)
	const count = 2000
	args := []string{
		"-target", "all", "-admin.addr", admin, "-log.format", "json", "-dashboard.addr", freeAddr(t),
		"-mqtt.url", s.mqtt.URL, "-mqtt.topic-prefix", s.prefix,
		"-kafka.brokers", s.kafka.Brokers, "-kafka.readings-topic", s.kafka.ReadingsTopic,
		"-kafka.alerts-topic", s.kafka.AlertsTopic, "-kafka.deadletter-topic", s.kafka.DeadLetterTopic,
		"-bridge.client-id", s.bridge.ClientID, "-bridge.share-group", s.bridge.ShareGroup, "-bridge.alerts-group", s.bridge.AlertsGroup,
		"-processor.group", s.processor.GroupID, "-influx.url", s.influx.URL, "-influx.bucket", s.influx.Bucket,
		"-cassandra.hosts", s.cassandra.Hosts, "-cassandra.keyspace", s.cassandra.Keyspace,
		"-simulator.devices", "20", "-simulator.speed", "0", "-simulator.count", strconv.Itoa(count), "-simulator.anomaly-rate", "0",
		"-simulator.device-prefix", s.sim.DevicePrefix, "-simulator.site-prefix", s.sim.SitePrefix, "-simulator.client-prefix", s.sim.ClientPrefix,
		"-simulator.start", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SENSORFLOW_INFLUX_TOKEN="+s.influx.Token)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("sensorflow logs:\n%s", logs.String())
		}
	}()

	health := func() error {
		return exec.Command(bin, "-health", "-admin.addr", admin).Run()
	}
	require.Eventually(t, func() bool { return health() == nil }, 2*time.Minute, 250*time.Millisecond, "never ready")
	prom := startPrometheus(t, admin)
	// Malformed payloads, so the dead-letter panel has reasons to show.
	publishMalformed(t, s)

	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return metricValue(body, `sensorflow_processor_readings_total{result="stored"}`) >= count
	}, 3*time.Minute, 500*time.Millisecond, "processor never stored every reading")
	require.Equal(t, float64(count), metricValue(body, `sensorflow_simulator_readings_total{result="acked"}`))
	require.Equal(t, float64(count), metricValue(body, `sensorflow_bridge_messages_total{result="forwarded"}`))
	// At least once: a retried Kafka write may deliver a reading twice (the
	// stores stay exact; the pipeline test checks them).
	require.GreaterOrEqual(t, metricValue(body, `sensorflow_processor_readings_total{result="stored"}`), float64(count))
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "sensorflow_bridge_kafka_write_seconds_count",
		`sensorflow_processor_sink_write_seconds_count{sink="influx"}`, `sensorflow_processor_sink_write_seconds_count{sink="cassandra"}`} {
		require.Positive(t, metricValue(body, name), name)
	}
	checkDashboardMetrics(t, body)
	checkDashboardPromQL(t, prom)
	resp, err := http.Get("http://" + admin + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "a SIGTERM shutdown exits 0")
	case <-time.After(90 * time.Second):
		t.Fatal("did not exit within 90 s of SIGTERM")
	}
	require.Contains(t, logs.String(), `"msg":"sensorflow stopped"`)
	require.Error(t, health(), "-health fails once the process is gone")

	// Every line is JSON from slog.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		require.True(t, strings.HasPrefix(line, "{"), "non-JSON log line: %s", line)
	}
}
