package mqttx

import (
	"context"
	"fmt"
	"log/slog"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorflow/sensorflow/internal/retry"
)

// Preflight connects once to the broker as clientID (clean session) and
// disconnects, retrying with backoff while the broker is unreachable, until
// ctx ends. It returns at once, naming the broker and the cause, when the
// broker refuses the credentials or the certificates do not verify
// (retry.Fatal): paho's own connect-retry would retry those silently.
// Services call it before their long-lived clients connect.
func (c *Config) Preflight(ctx context.Context, log *slog.Logger, clientID string) error {
	return retry.Forever(ctx, log, "connecting to mqtt", func() error {
		o, err := c.Options(clientID, true)
		if err != nil {
			return retry.Permanent(err)
		}
		o.SetConnectRetry(false).SetAutoReconnect(false)
		cl := mqtt.NewClient(o)
		if err := Wait(cl.Connect(), c.ConnectWait+c.ConnectWait/2); err != nil {
			return fmt.Errorf("mqtt broker %s: %w", c.URL, err)
		}
		cl.Disconnect(0)
		return nil
	})
}
