package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/internal/tlsx"
)

// securedStack is a stack of its own started by deploy/local/services.sh in
// secured mode: Mosquitto with TLS, passwords and the ACL, Kafka with
// SASL/SCRAM-SHA-512 over TLS, Cassandra with PasswordAuthenticator and
// client TLS, InfluxDB 2.7 over HTTPS with its token. Every certificate comes
// from a CA this test makes.
type securedStack struct {
	ca, password, dir string
	mqtt, kafka       string // addresses
	cassandra, influx string
	passwordFile      string // holds password
	influxTokenFile   string
}

func startSecuredStack(t *testing.T) *securedStack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a secured Mosquitto, Kafka, Cassandra and InfluxDB (skipped with -short)")
	}
	if _, err := exec.LookPath("mosquitto"); err != nil && !testenv.Required() {
		t.Skip("run `make services` first: the secured stack uses the same servers")
	}
	pki := testenv.NewPKI(t, "Sensorflow secured-stack test CA")
	pki.Issue(t, "server", true)
	secret := make([]byte, 16)
	_, err := rand.Read(secret)
	require.NoError(t, err)
	s := &securedStack{ca: pki.CA(), password: hex.EncodeToString(secret), dir: t.TempDir()}
	s.passwordFile = filepath.Join(s.dir, "password")
	require.NoError(t, os.WriteFile(s.passwordFile, []byte(s.password+"\n"), 0o600))
	svc := filepath.Join(s.dir, "services")
	s.influxTokenFile = filepath.Join(svc, "influxdb.token")

	port := func() string { return strconv.Itoa(testenv.FreePort(t)) }
	mqttPort, kafkaPort, cassPort, influxPort := port(), port(), port(), port()
	s.mqtt, s.kafka = "127.0.0.1:"+mqttPort, "127.0.0.1:"+kafkaPort
	s.cassandra, s.influx = "127.0.0.1:"+cassPort, "127.0.0.1:"+influxPort
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	env := append(os.Environ(),
		"SENSORFLOW_SERVICES_DIR="+svc, "SENSORFLOW_SERVICES_LIB="+filepath.Join(root, ".services/lib"),
		"SENSORFLOW_TLS_DIR="+pki.Dir, "SENSORFLOW_SECURE_PASSWORD="+s.password,
		"SENSORFLOW_MQTT_PORT="+mqttPort, "SENSORFLOW_KAFKA_PORT="+kafkaPort,
		"SENSORFLOW_KAFKA_CONTROLLER_PORT="+port(), "SENSORFLOW_KAFKA_INTERNAL_PORT="+port(),
		"SENSORFLOW_CASSANDRA_PORT="+cassPort, "SENSORFLOW_CASSANDRA_STORAGE_PORT="+port(),
		"SENSORFLOW_INFLUX_PORT="+influxPort)
	script := filepath.Join(root, "deploy/local/services.sh")
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if out, err := run("down"); err != nil {
			t.Logf("stopping the secured stack: %v\n%s", err, out)
		}
	})
	out, err := run("up")
	require.NoError(t, err, "starting the secured stack:\n%s", out)
	t.Logf("secured stack up:\n%s", out)
	return s
}

// flags are the client flags of every server, as deploy/README.md documents
// them: TLS with the stack's CA, credentials from files.
func (s *securedStack) flags(mqttUser string) []string {
	return []string{
		"-mqtt.url", "ssl://" + s.mqtt, "-mqtt.tls.ca", s.ca, "-mqtt.username", mqttUser, "-mqtt.password-file", s.passwordFile,
		"-kafka.brokers", s.kafka, "-kafka.tls.ca", s.ca, "-kafka.sasl.mechanism", "SCRAM-SHA-512",
		"-kafka.sasl.username", "sensorflow", "-kafka.sasl.password-file", s.passwordFile,
		"-cassandra.hosts", s.cassandra, "-cassandra.tls.ca", s.ca, "-cassandra.username", "sensorflow",
		"-cassandra.password-file", s.passwordFile,
		"-influx.url", "https://" + s.influx, "-influx.tls.ca", s.ca, "-influx.token-file", s.influxTokenFile,
	}
}

// cassandraSession logs in over TLS as user with password.
func (s *securedStack) cassandraSession(t *testing.T, user, password string) *gocql.Session {
	t.Helper()
	cl := gocql.NewCluster(s.cassandra)
	cl.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: password}
	tc, err := (&tlsx.Config{CAFile: s.ca}).Build()
	require.NoError(t, err)
	cl.SslOpts = &gocql.SslOptions{Config: tc, EnableHostVerification: true}
	cl.Timeout, cl.ConnectTimeout = 20*time.Second, 20*time.Second
	sess, err := cl.CreateSession()
	require.NoError(t, err)
	return sess
}

// The whole pipeline runs on the secured servers with the documented flags:
// every reading the simulator had acknowledged is stored in InfluxDB and
// Cassandra, read back over TLS.
func TestSecuredPipeline(t *testing.T) {
	s := startSecuredStack(t)
	// The processor's own role: it may create its keyspace and then owns it.
	admin := s.cassandraSession(t, "cassandra", "cassandra")
	require.NoError(t, admin.Query(fmt.Sprintf(`CREATE ROLE IF NOT EXISTS sensorflow WITH PASSWORD = '%s' AND LOGIN = true`, s.password)).Exec())
	require.NoError(t, admin.Query(`GRANT CREATE ON ALL KEYSPACES TO sensorflow`).Exec())
	admin.Close()

	bin, err := buildBinary()
	require.NoError(t, err)
	id := testenv.Unique("sec")
	keyspace := testenv.Unique("sfsec")
	const devices, count = 10, 500
	startProc := func(name string, args ...string) (admin string, exited chan error, logs *syncBuffer) {
		admin, exited, logs = freeAddr(t), make(chan error, 1), &syncBuffer{}
		cmd := exec.Command(bin, append(args, "-admin.addr", admin, "-log.format", "json", "-dashboard.addr", "")...)
		cmd.Stdout, cmd.Stderr = logs, logs
		require.NoError(t, cmd.Start())
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			if t.Failed() {
				t.Logf("%s logs:\n%s", name, logs.String())
			}
		})
		return admin, exited, logs
	}
	pipeline, _, _ := startProc("bridge,processor", append(s.flags("sensorflow-bridge"),
		"-target", "bridge,processor", "-bridge.client-id", id+"-bridge", "-bridge.alerts-group", id+"-alerts",
		"-processor.group", id+"-processor", "-cassandra.keyspace", keyspace)...)
	metrics := func(addr string) string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + pipeline + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 250*time.Millisecond, "bridge and processor never ready on the secured servers")
	_, simExited, simLogs := startProc("simulator", append(s.flags("sensorflow-simulator"),
		"-target", "simulator", "-simulator.devices", strconv.Itoa(devices), "-simulator.speed", "0",
		"-simulator.count", strconv.Itoa(count), "-simulator.anomaly-rate", "0",
		"-simulator.device-prefix", id+"-dev-", "-simulator.site-prefix", id+"-site-", "-simulator.client-prefix", id+"-sim-",
		"-simulator.start", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))...)
	// The simulator exits once every reading is published and acknowledged.
	select {
	case err := <-simExited:
		require.NoError(t, err)
	case <-time.After(3 * time.Minute):
		t.Fatal("the simulator did not finish")
	}
	require.Contains(t, simLogs.String(), fmt.Sprintf(`"published":%d,"acked":%d,"errors":0`, count, count))
	require.Eventually(t, func() bool {
		return metricValue(metrics(pipeline), `sensorflow_processor_readings_total{result="stored"}`) >= count
	}, 3*time.Minute, 500*time.Millisecond, "not every acknowledged reading was stored")

	// Read back over TLS, with the same credentials.
	tc, err := (&tlsx.Config{CAFile: s.ca}).Build()
	require.NoError(t, err)
	token, err := os.ReadFile(s.influxTokenFile)
	require.NoError(t, err)
	ic := influxdb2.NewClientWithOptions("https://"+s.influx, strings.TrimSpace(string(token)), influxdb2.DefaultOptions().SetTLSConfig(tc))
	defer ic.Close()
	res, err := ic.QueryAPI("sensorflow").Query(context.Background(), fmt.Sprintf(`import "strings"
from(bucket: "sensorflow")
  |> range(start: -1d, stop: 1d)
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and strings.hasPrefix(v: r.device_id, prefix: %q))
  |> keep(columns: ["_time", "device_id"])`, id+"-dev-"))
	require.NoError(t, err)
	inInflux := 0
	for res.Next() {
		inInflux++
	}
	require.NoError(t, res.Err())
	sess := s.cassandraSession(t, "sensorflow", s.password)
	defer sess.Close()
	var inCassandra int
	iter := sess.Query(fmt.Sprintf(`SELECT metric FROM %s.readings`, keyspace)).Iter()
	var metric string
	for iter.Scan(&metric) {
		if metric == "temperature" {
			inCassandra++
		}
	}
	require.NoError(t, iter.Close())
	t.Logf("secured pipeline: %d readings acknowledged; temperature points: %d in InfluxDB (https, token), %d in Cassandra (TLS, PasswordAuthenticator)", count, inInflux, inCassandra)
	require.Equal(t, count, inInflux)
	require.Equal(t, count, inCassandra)

	checkRefusals(t, s, bin)
}

// refusals: a wrong password or an untrusted certificate stops the service
// at once with an error naming the server and the cause, never a retry loop.
func checkRefusals(t *testing.T, s *securedStack, bin string) {
	other := testenv.NewPKI(t, "Some other CA")
	bad := filepath.Join(s.dir, "wrong-password")
	require.NoError(t, os.WriteFile(bad, []byte("not-the-password\n"), 0o600))
	cases := []struct {
		name, target string
		override     []string
		want         []string // in the error, in order
	}{
		{"kafka password", "bridge", []string{"-kafka.sasl.password-file", bad}, []string{"kafka " + s.kafka, "SASL Authentication Failed"}},
		{"kafka certificate", "processor", []string{"-kafka.tls.ca", other.CA()}, []string{"kafka " + s.kafka, "x509: certificate signed by unknown authority"}},
		{"cassandra password", "processor", []string{"-cassandra.password-file", bad}, []string{"cassandra at " + s.cassandra, "password are incorrect"}},
		{"cassandra certificate", "processor", []string{"-cassandra.tls.ca", other.CA()}, []string{"cassandra at " + s.cassandra, "x509: certificate signed by unknown authority"}},
		{"influxdb token", "processor", []string{"-influx.token-file", bad}, []string{"influxdb https://" + s.influx, "401 Unauthorized"}},
		{"influxdb certificate", "processor", []string{"-influx.tls.ca", other.CA()}, []string{"influxdb https://" + s.influx, "x509: certificate signed by unknown authority"}},
		{"mqtt password", "bridge", []string{"-mqtt.password-file", bad}, []string{"mqtt broker ssl://" + s.mqtt, "not Authorized"}},
		{"mqtt certificate", "simulator", []string{"-mqtt.tls.ca", other.CA()}, []string{"mqtt broker ssl://" + s.mqtt, "x509: certificate signed by unknown authority"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := "sensorflow-bridge"
			if c.target == "simulator" {
				user = "sensorflow-simulator"
			}
			// The last occurrence of a flag wins.
			args := append(s.flags(user), "-target", c.target, "-admin.addr", freeAddr(t), "-dashboard.addr", "",
				"-log.format", "text", "-processor.group", testenv.Unique("refused"), "-cassandra.keyspace", testenv.Unique("refused"),
				"-simulator.count", "10")
			args = append(args, c.override...)
			cmd := exec.Command(bin, args...)
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				require.Error(t, err, "%s", out.String())
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("still running: the refusal is retried instead of reported\n%s", out.String())
			}
			var last string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if strings.HasPrefix(line, "sensorflow: ") {
					last = line
				}
			}
			require.NotEmpty(t, last, "no error line:\n%s", out.String())
			rest := last
			for _, w := range c.want {
				i := strings.Index(rest, w)
				require.GreaterOrEqual(t, i, 0, "%q missing from %q", w, last)
				rest = rest[i+len(w):]
			}
			require.NotContains(t, out.String(), "msg=retrying", "a refusal is not retried")
			t.Logf("%s", last)
		})
	}
}
