// Package mqttx holds the MQTT connection settings every Sensorflow component
// shares and turns them into paho client options.
package mqttx

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorflow/sensorflow/internal/tlsx"
)

// Config says how to reach the MQTT broker. It is a value; copy it freely.
type Config struct {
	URL          string
	Username     string
	Password     string
	PasswordFile string
	TLS          tlsx.Config
	KeepAlive    time.Duration
	ConnectWait  time.Duration
}

// RegisterFlags registers the mqtt.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "mqtt.url", "tcp://127.0.0.1:1883", "MQTT broker URL: tcp://host:port, or ssl://host:port for TLS.")
	fs.StringVar(&c.Username, "mqtt.username", "", "MQTT username (empty: anonymous).")
	fs.StringVar(&c.Password, "mqtt.password", "", "MQTT password; prefer SENSORFLOW_MQTT_PASSWORD or -mqtt.password-file.")
	fs.StringVar(&c.PasswordFile, "mqtt.password-file", "", "File holding the MQTT password.")
	fs.DurationVar(&c.KeepAlive, "mqtt.keepalive", 30*time.Second, "MQTT keep-alive interval.")
	fs.DurationVar(&c.ConnectWait, "mqtt.connect-timeout", 10*time.Second, "Timeout of one MQTT connection attempt.")
	c.TLS.RegisterFlags(fs, "mqtt")
}

// Validate checks the settings without connecting.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("mqtt.url %q: %w", c.URL, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("mqtt.url %q: scheme must be tcp, ssl, ws or wss", c.URL)
	}
	if u.Host == "" {
		return fmt.Errorf("mqtt.url %q: no host", c.URL)
	}
	return nil
}

// Options returns paho options for a client with the given id. cleanSession
// false makes the broker keep the session (subscriptions and queued QoS 1
// messages) while the client is away.
func (c *Config) Options(clientID string, cleanSession bool) (*mqtt.ClientOptions, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o := mqtt.NewClientOptions().
		AddBroker(c.URL).
		SetClientID(clientID).
		SetCleanSession(cleanSession).
		SetKeepAlive(c.KeepAlive).
		SetConnectTimeout(c.ConnectWait).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second)
	switch u, _ := url.Parse(c.URL); u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		o.SetCustomOpenConnectionFn(openBuffered)
	}
	if c.Username != "" {
		o.SetUsername(c.Username)
	}
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	if pw != "" {
		o.SetPassword(pw)
	}
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("mqtt tls: %w", err)
	}
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	return o, nil
}

func (c *Config) password() (string, error) {
	if c.PasswordFile == "" {
		return c.Password, nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("reading mqtt.password-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Wait waits for a paho token up to d and returns its error, or a timeout.
func Wait(t mqtt.Token, d time.Duration) error {
	if !t.WaitTimeout(d) {
		return fmt.Errorf("no answer from the mqtt broker within %s", d)
	}
	return t.Error()
}
