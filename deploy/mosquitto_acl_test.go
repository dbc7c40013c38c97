package deploy_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/testenv"
)

// The ACL of deploy/mosquitto/acl, enforced by a real Mosquitto: a device
// cannot publish as another or read another's alerts; the bridge reads all
// telemetry and writes alerts; alert subscribers only read.
func TestMosquittoACL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Mosquitto (skipped with -short)")
	}
	if _, err := exec.LookPath("mosquitto_passwd"); err != nil {
		if testenv.Required() {
			t.Fatal("mosquitto is not installed: run `make services`")
		}
		t.Skip("mosquitto is not installed: run `make services`")
	}
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	users := []string{"sensorflow-bridge", "sensorflow-alerts", "dev-1", "dev-2"}
	for i, u := range users {
		args := []string{"-b", passwd, u, "pw-" + u}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	acl, err := filepath.Abs("mosquitto/acl")
	require.NoError(t, err)
	port := testenv.FreePort(t)
	testenv.PrivateMosquitto(t, fmt.Sprintf(
		"per_listener_settings false\nlistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\n",
		port, passwd, acl), port)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	type inbox struct {
		mu   sync.Mutex
		msgs []string
	}
	connect := func(user string) (mqtt.Client, error) {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(user + "-" + t.Name()).
			SetUsername(user).SetPassword("pw-" + user).SetConnectRetry(false))
		tok := c.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			return nil, fmt.Errorf("connect timeout")
		}
		return c, tok.Error()
	}
	var clients map[string]mqtt.Client
	require.Eventually(t, func() bool {
		clients = map[string]mqtt.Client{}
		for _, u := range users {
			c, err := connect(u)
			if err != nil {
				return false
			}
			clients[u] = c
		}
		return true
	}, 10*time.Second, 100*time.Millisecond, "mosquitto with the ACL did not accept the users")
	defer func() {
		for _, c := range clients {
			c.Disconnect(100)
		}
	}()
	_, err = connect("intruder")
	require.Error(t, err, "unknown users are refused")

	subscribe := func(user, filter string) *inbox {
		in := &inbox{}
		tok := clients[user].Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			in.mu.Lock()
			in.msgs = append(in.msgs, m.Topic()+" "+string(m.Payload()))
			in.mu.Unlock()
		})
		require.True(t, tok.WaitTimeout(5*time.Second))
		return in
	}
	publish := func(user, topic, payload string) {
		tok := clients[user].Publish(topic, 1, false, payload)
		require.True(t, tok.WaitTimeout(5*time.Second))
	}
	telemetry := subscribe("sensorflow-bridge", "sensorflow/+/+/telemetry")
	dev1Alerts := subscribe("dev-1", "sensorflow/+/+/alerts") // the ACL narrows it to dev-1's own
	readerAlerts := subscribe("sensorflow-alerts", "sensorflow/+/+/alerts")
	// dev-1 subscribing to dev-2's telemetry gets nothing.
	spy := subscribe("dev-1", "sensorflow/+/dev-2/telemetry")

	publish("dev-1", "sensorflow/s1/dev-1/telemetry", "own")
	publish("dev-1", "sensorflow/s1/dev-2/telemetry", "forged")
	publish("dev-2", "sensorflow/s1/dev-2/telemetry", "dev-2 own")
	publish("sensorflow-alerts", "sensorflow/s1/dev-1/telemetry", "reader forged")
	publish("sensorflow-bridge", "sensorflow/s1/dev-1/alerts", "alert for dev-1")
	publish("sensorflow-bridge", "sensorflow/s1/dev-2/alerts", "alert for dev-2")
	publish("dev-2", "sensorflow/s1/dev-1/alerts", "forged alert")

	time.Sleep(time.Second) // let anything that would be delivered arrive
	got := func(in *inbox) []string { in.mu.Lock(); defer in.mu.Unlock(); return append([]string(nil), in.msgs...) }
	require.ElementsMatch(t, []string{"sensorflow/s1/dev-1/telemetry own", "sensorflow/s1/dev-2/telemetry dev-2 own"}, got(telemetry))
	require.Equal(t, []string{"sensorflow/s1/dev-1/alerts alert for dev-1"}, got(dev1Alerts))
	require.ElementsMatch(t, []string{"sensorflow/s1/dev-1/alerts alert for dev-1", "sensorflow/s1/dev-2/alerts alert for dev-2"}, got(readerAlerts))
	require.Empty(t, got(spy))
}
