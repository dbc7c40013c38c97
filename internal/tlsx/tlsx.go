// Package tlsx holds the TLS client settings shared by every client
// Sensorflow opens (MQTT, Kafka, Cassandra, InfluxDB).
package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// Config holds TLS client settings shared by every client Sensorflow opens.
type Config struct {
	Enabled    bool
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	Insecure   bool
}

// RegisterFlags registers <prefix>.tls.* flags.
func (t *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.BoolVar(&t.Enabled, prefix+".tls", false, "Use TLS for "+prefix+" (implied by a CA, certificate or an ssl:// URL).")
	fs.StringVar(&t.CAFile, prefix+".tls.ca", "", "PEM file of the CA that signed the "+prefix+" server certificate (empty: system roots).")
	fs.StringVar(&t.CertFile, prefix+".tls.cert", "", "PEM client certificate for "+prefix+".")
	fs.StringVar(&t.KeyFile, prefix+".tls.key", "", "PEM client key for "+prefix+".")
	fs.StringVar(&t.ServerName, prefix+".tls.server-name", "", "Server name to verify the "+prefix+" certificate against (empty: the host).")
	fs.BoolVar(&t.Insecure, prefix+".tls.insecure-skip-verify", false, "Do not verify the "+prefix+" server certificate (testing only).")
}

// Build returns the *tls.Config, or nil when TLS is off.
func (t *Config) Build() (*tls.Config, error) {
	if !t.Enabled && t.CAFile == "" && t.CertFile == "" {
		return nil, nil
	}
	return buildTLS(t)
}

func buildTLS(t *Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.Insecure} //nolint:gosec // opt-in flag for testing
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("a client certificate needs both a cert and a key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
