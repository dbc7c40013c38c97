package tlsx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writePair writes a self-signed certificate and its key as PEM files.
func writePair(t *testing.T, dir string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sensorflow-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePair(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	tests := []struct {
		name    string
		cfg     Config
		wantNil bool
		wantErr string
		check   func(t *testing.T, c *tls.Config)
	}{
		{name: "off", cfg: Config{}, wantNil: true},
		{name: "on with system roots", cfg: Config{Enabled: true, ServerName: "kafka-1"}, check: func(t *testing.T, c *tls.Config) {
			require.Nil(t, c.RootCAs)
			require.Equal(t, "kafka-1", c.ServerName)
			require.Equal(t, uint16(tls.VersionTLS12), c.MinVersion)
		}},
		{name: "a CA implies TLS", cfg: Config{CAFile: cert}, check: func(t *testing.T, c *tls.Config) { require.NotNil(t, c.RootCAs) }},
		{name: "client certificate", cfg: Config{CertFile: cert, KeyFile: key}, check: func(t *testing.T, c *tls.Config) { require.Len(t, c.Certificates, 1) }},
		{name: "missing CA file", cfg: Config{CAFile: filepath.Join(dir, "none.pem")}, wantErr: "reading CA file"},
		{name: "CA file without PEM", cfg: Config{CAFile: notPEM}, wantErr: "holds no PEM certificate"},
		{name: "cert without key", cfg: Config{CertFile: cert}, wantErr: "needs both a cert and a key file"},
		{name: "key that is not a key", cfg: Config{CertFile: cert, KeyFile: notPEM}, wantErr: "loading client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.cfg.Build()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			if tt.wantNil {
				require.Nil(t, c)
				return
			}
			require.NotNil(t, c)
			tt.check(t, c)
		})
	}
}
