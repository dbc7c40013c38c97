package mqttx_test

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/testenv"
)

// MQTT over TLS against a real Mosquitto with a CA generated here: server
// authentication, the server name, and client certificates.
func TestTLSAgainstMosquitto(t *testing.T) {
	ca := testenv.NewPKI(t, "Sensorflow test CA")
	other := testenv.NewPKI(t, "Some other CA")
	srvCert, srvKey := ca.Issue(t, "mosquitto", true)
	cliCert, cliKey := ca.Issue(t, "dev-00001", false)
	strangerCert, strangerKey := other.Issue(t, "dev-00002", false)
	caFile := ca.CA()

	tlsPort, mtlsPort := testenv.FreePort(t), testenv.FreePort(t)
	testenv.PrivateMosquitto(t, fmt.Sprintf(`per_listener_settings true
listener %d 127.0.0.1
allow_anonymous true
cafile %s
certfile %s
keyfile %s
listener %d 127.0.0.1
allow_anonymous true
cafile %s
certfile %s
keyfile %s
require_certificate true
`, tlsPort, caFile, srvCert, srvKey, mtlsPort, caFile, srvCert, srvKey), tlsPort, mtlsPort)

	connect := func(c mqttx.Config) (mqtt.Client, error) {
		c.KeepAlive, c.ConnectWait = 30*time.Second, 5*time.Second
		o, err := c.Options(fmt.Sprintf("tls-%d", time.Now().UnixNano()), true)
		if err != nil {
			return nil, err
		}
		o.SetConnectRetry(false).SetAutoReconnect(false)
		cl := mqtt.NewClient(o)
		if err := mqttx.Wait(cl.Connect(), 10*time.Second); err != nil {
			return nil, err
		}
		return cl, nil
	}
	roundTrip := func(t *testing.T, c mqttx.Config) {
		cl, err := connect(c)
		require.NoError(t, err)
		defer cl.Disconnect(100)
		got := make(chan string, 1)
		require.NoError(t, mqttx.Wait(cl.Subscribe("sensorflow/s/d/telemetry", 1, func(_ mqtt.Client, m mqtt.Message) {
			got <- string(m.Payload())
		}), 5*time.Second))
		require.NoError(t, mqttx.Wait(cl.Publish("sensorflow/s/d/telemetry", 1, false, "over tls"), 5*time.Second))
		select {
		case p := <-got:
			require.Equal(t, "over tls", p)
		case <-time.After(5 * time.Second):
			t.Fatal("no message back over TLS")
		}
	}
	tlsURL := fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort)
	mtlsURL := fmt.Sprintf("ssl://127.0.0.1:%d", mtlsPort)

	t.Run("ssl URL and the test CA", func(t *testing.T) {
		c := mqttx.Config{URL: tlsURL}
		c.TLS.CAFile = caFile
		roundTrip(t, c)
	})
	t.Run("a CA implies TLS on a tcp URL", func(t *testing.T) {
		c := mqttx.Config{URL: fmt.Sprintf("tcp://127.0.0.1:%d", tlsPort)}
		c.TLS.CAFile = caFile
		roundTrip(t, c)
	})
	t.Run("server name checked against the certificate", func(t *testing.T) {
		c := mqttx.Config{URL: tlsURL}
		c.TLS.CAFile, c.TLS.ServerName = caFile, "mqtt.sensorflow.test"
		roundTrip(t, c)
		c.TLS.ServerName = "mqtt.example.com"
		_, err := connect(c)
		require.ErrorContains(t, err, "certificate is valid for")
	})
	t.Run("a server signed by another CA is refused", func(t *testing.T) {
		c := mqttx.Config{URL: tlsURL}
		c.TLS.CAFile = other.CA()
		_, err := connect(c)
		require.ErrorContains(t, err, "certificate signed by unknown authority")
	})
	t.Run("system roots do not know the test CA", func(t *testing.T) {
		c := mqttx.Config{URL: tlsURL}
		_, err := connect(c)
		require.ErrorContains(t, err, "certificate signed by unknown authority")
	})
	t.Run("plain MQTT to the TLS listener fails", func(t *testing.T) {
		_, err := connect(mqttx.Config{URL: fmt.Sprintf("tcp://127.0.0.1:%d", tlsPort)})
		require.Error(t, err)
	})
	t.Run("client certificate accepted", func(t *testing.T) {
		c := mqttx.Config{URL: mtlsURL}
		c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile = caFile, cliCert, cliKey
		roundTrip(t, c)
	})
	t.Run("no client certificate refused", func(t *testing.T) {
		c := mqttx.Config{URL: mtlsURL}
		c.TLS.CAFile = caFile
		_, err := connect(c)
		require.Error(t, err)
	})
	t.Run("client certificate of another CA refused", func(t *testing.T) {
		c := mqttx.Config{URL: mtlsURL}
		c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile = caFile, strangerCert, strangerKey
		_, err := connect(c)
		require.Error(t, err)
	})
	t.Run("a certificate without its key is a configuration error", func(t *testing.T) {
		c := mqttx.Config{URL: mtlsURL}
		c.TLS.CAFile, c.TLS.CertFile = caFile, cliCert
		_, err := c.Options("x", true)
		require.ErrorContains(t, err, "needs both a cert and a key file")
	})
}
