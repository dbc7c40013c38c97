// Package testenv finds the real servers integration tests run against.
//
// Tests reach the servers through the same environment variables the
// sensorflow binary reads (SENSORFLOW_MQTT_URL, SENSORFLOW_KAFKA_BROKERS,
// SENSORFLOW_CASSANDRA_HOSTS, SENSORFLOW_INFLUX_URL, SENSORFLOW_INFLUX_TOKEN,
// SENSORFLOW_INFLUX_BUCKET), defaulting to the local stack of `make
// services` and the InfluxDB token it made. A test whose server is unreachable is skipped, or fails when
// SENSORFLOW_REQUIRE_SERVICES=1 (set by `make test` and CI). With -short,
// every integration test is skipped.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Servers is where the real servers are.
type Servers struct {
	MQTTURL        string
	KafkaBrokers   string
	CassandraHosts string
	InfluxURL      string
	InfluxToken    string
	InfluxBucket   string
}

// Get returns the configured server addresses.
func Get() Servers {
	return Servers{
		MQTTURL:        env("SENSORFLOW_MQTT_URL", "tcp://127.0.0.1:1883"),
		KafkaBrokers:   env("SENSORFLOW_KAFKA_BROKERS", "127.0.0.1:9092"),
		CassandraHosts: env("SENSORFLOW_CASSANDRA_HOSTS", "127.0.0.1:9042"),
		InfluxURL:      env("SENSORFLOW_INFLUX_URL", "http://127.0.0.1:8086"),
		InfluxToken:    influxToken(),
		InfluxBucket:   env("SENSORFLOW_INFLUX_BUCKET", "sensorflow"),
	}
}

// influxToken is SENSORFLOW_INFLUX_TOKEN, or else the token the local stack
// of `make services` made (influxdb.token in its folder).
func influxToken() string {
	if v := os.Getenv("SENSORFLOW_INFLUX_TOKEN"); v != "" {
		return v
	}
	dir := os.Getenv("SENSORFLOW_SERVICES_DIR")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return ""
		}
		dir = filepath.Join(root, ".services")
	}
	b, err := os.ReadFile(filepath.Join(dir, "influxdb.token"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// repoRoot is the nearest folder at or above the working directory that
// holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// MQTT returns the broker URL, or skips/fails the test when it is unreachable.
func MQTT(t testing.TB) string {
	s := Get()
	u, err := url.Parse(s.MQTTURL)
	if err != nil {
		t.Fatalf("SENSORFLOW_MQTT_URL %q: %v", s.MQTTURL, err)
	}
	need(t, "Mosquitto (MQTT)", u.Host)
	return s.MQTTURL
}

// Kafka returns the bootstrap brokers, or skips/fails.
func Kafka(t testing.TB) string {
	s := Get()
	need(t, "Apache Kafka", strings.Split(s.KafkaBrokers, ",")[0])
	return s.KafkaBrokers
}

// Cassandra returns the contact points, or skips/fails.
func Cassandra(t testing.TB) string {
	s := Get()
	host := strings.Split(s.CassandraHosts, ",")[0]
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "9042")
	}
	need(t, "Apache Cassandra", host)
	return s.CassandraHosts
}

// Influx returns URL, token and bucket, or skips/fails.
func Influx(t testing.TB) (urlStr, token, bucket string) {
	s := Get()
	u, err := url.Parse(s.InfluxURL)
	if err != nil {
		t.Fatalf("SENSORFLOW_INFLUX_URL %q: %v", s.InfluxURL, err)
	}
	need(t, "InfluxDB", u.Host)
	return s.InfluxURL, s.InfluxToken, s.InfluxBucket
}

// Required reports whether unreachable servers fail tests.
func Required() bool { return os.Getenv("SENSORFLOW_REQUIRE_SERVICES") == "1" }

func need(t testing.TB, name, hostport string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test: needs %s (skipped with -short)", name)
	}
	c, err := net.DialTimeout("tcp", hostport, 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	msg := fmt.Sprintf("%s is not reachable at %s (%v): run `make services` or set its SENSORFLOW_* address", name, hostport, err)
	if Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Unique returns a name unique to this test run, for topics, groups,
// keyspaces and client ids: prefix, lowercase letters and digits.
func Unique(prefix string) string {
	return fmt.Sprintf("%s%x", prefix, time.Now().UnixNano()&0xffffffffff)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// PrivateMosquitto starts a Mosquitto of the test's own with conf (listeners
// and their settings; the user to run as is added) and stops it when the test
// ends. It waits until every port accepts connections. Without the mosquitto
// binary the test is skipped, or fails under SENSORFLOW_REQUIRE_SERVICES=1.
func PrivateMosquitto(t testing.TB, conf string, ports ...int) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Mosquitto (skipped with -short)")
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if Required() {
			t.Fatal("mosquitto is not installed: run `make services`")
		}
		t.Skip("mosquitto is not installed: run `make services`")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(path, []byte("user "+me.Username+"\n"+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(10 * time.Second)
	for _, port := range ports {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("mosquitto exited: %s", out.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("mosquitto not listening on %d: %s", port, out.String())
			}
		}
	}
}

// Tool returns the path of a pinned peer tool (prometheus, promtool) that
// deploy/local/tools.sh builds into the shared cache, building it if it is
// missing (`make test` builds them beforehand). When it cannot be built the
// test is skipped, or fails under SENSORFLOW_REQUIRE_SERVICES=1.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("runs %s (skipped with -short)", name)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "deploy/local/tools.sh"), "path", name)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := fmt.Sprintf("deploy/local/tools.sh path %s: %v\n%s", name, err, stderr.String())
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return strings.TrimSpace(string(out))
}
