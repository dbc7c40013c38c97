package mqttx

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// ServeEmbedded runs an in-process MQTT broker (mochi-mqtt) on addr for the
// zero-setup demo and hermetic tests: it allows every client and holds far
// more unacknowledged QoS 1 messages per client than the bridge keeps in
// flight, so it drops nothing the bridge has not acknowledged. The caller
// closes it.
func ServeEmbedded(addr string, log *slog.Logger) (*mochi.Server, error) {
	ln, err := net.Listen("tcp", addr) // fail early and clearly if the port is taken
	if err != nil {
		return nil, fmt.Errorf("embedded MQTT broker on %s: %w", addr, err)
	}
	ln.Close()
	// mochi logs every connection at info level: keep only its errors.
	// mochi drops a QoS 1 message once a client holds MaximumInflight
	// unacknowledged ones; the bridge holds up to its queue plus a batch
	// until Kafka confirmed them, so allow far more than that.
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 1 << 16
	opts := &mochi.Options{Capabilities: caps, Logger: slog.New(levelFilter{log.Handler(), slog.LevelError}).With("component", "mqtt-broker")}
	s := mochi.New(opts)
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{Type: "tcp", ID: "demo", Address: addr})); err != nil {
		return nil, fmt.Errorf("embedded MQTT broker on %s: %w", addr, err)
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	return s, nil
}

// levelFilter passes only records at or above min.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (h levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h.Handler.WithAttrs(a), h.min}
}

func (h levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{h.Handler.WithGroup(g), h.min}
}
