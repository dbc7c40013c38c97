package mqttx_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/testenv"
)

// pki is a CA made by the test, with the files of its certificates.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T, name string) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{dir: t.TempDir(), caCert: cert, caKey: key}
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	path := filepath.Join(p.dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
	return path
}

// issue signs a certificate for a server (with loopback names) or a
// client, and returns the paths of its certificate and key.
func (p *pki) issue(t *testing.T, name string, server bool) (certPath, keyPath string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost", "mqtt.sensorflow.test"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kder)
}

// MQTT over TLS against a real Mosquitto with a CA generated here: server
// authentication, the server name, and client certificates.
func TestTLSAgainstMosquitto(t *testing.T) {
	ca := newPKI(t, "Sensorflow test CA")
	other := newPKI(t, "Some other CA")
	srvCert, srvKey := ca.issue(t, "mosquitto", true)
	cliCert, cliKey := ca.issue(t, "dev-00001", false)
	strangerCert, strangerKey := other.issue(t, "dev-00002", false)
	caFile := filepath.Join(ca.dir, "ca.pem")

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
		c.TLS.CAFile = filepath.Join(other.dir, "ca.pem")
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
