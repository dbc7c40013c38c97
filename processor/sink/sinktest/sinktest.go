// Package sinktest is the contract every sink.Sink passes against its real
// server: write and read back, idempotent rewrites, empty batches, batches
// larger than one request, errors when the server is down, and context
// cancellation.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// Harness adapts one sink implementation to the suite.
type Harness struct {
	// New returns a sink writing to the real server through addr-rewriting
	// proxy p (nil: directly).
	New func(t *testing.T, p *Proxy) sink.Sink
	// Target is the real server's host:port, for the proxy; empty for an
	// embedded store.
	Target string
	// Readings returns the stored values of a device's metric in [from, to],
	// keyed by Unix nanoseconds.
	Readings func(t *testing.T, device, metric string, from, to time.Time) map[int64]float64
	// Alerts returns the state of each stored alert of a device, by id.
	Alerts func(t *testing.T, device string) map[string]string
	// RequestSize is the most readings one request carries; the suite writes
	// batches several times larger.
	RequestSize int
}

// Run runs the contract.
func Run(t *testing.T, h Harness) {
	t.Run("write and read back", func(t *testing.T) {
		s := h.New(t, nil)
		defer s.Close()
		dev := unique("rb")
		b, from, to := batch(dev, 50, time.Now().Add(-time.Hour))
		require.NoError(t, s.Write(context.Background(), b))
		got := h.Readings(t, dev, "temperature", from, to)
		require.Len(t, got, 50)
		for _, r := range b.Readings {
			require.Equal(t, r.Metrics["temperature"], got[r.TS.UnixNano()])
		}
		require.Len(t, h.Readings(t, dev, "humidity", from, to), 50)
	})
	t.Run("rewriting a batch leaves no duplicates", func(t *testing.T) {
		s := h.New(t, nil)
		defer s.Close()
		dev := unique("dup")
		b, from, to := batch(dev, 40, time.Now().Add(-2*time.Hour))
		for range 3 {
			require.NoError(t, s.Write(context.Background(), b))
		}
		require.Len(t, h.Readings(t, dev, "temperature", from, to), 40)
		require.Len(t, h.Alerts(t, dev), 1)
	})
	t.Run("empty batch", func(t *testing.T) {
		s := h.New(t, nil)
		defer s.Close()
		require.NoError(t, s.Write(context.Background(), sink.Batch{}))
	})
	t.Run("batch larger than one request is split", func(t *testing.T) {
		s := h.New(t, nil)
		defer s.Close()
		dev := unique("big")
		n := 3*h.RequestSize + 7
		b, from, to := batch(dev, n, time.Now().Add(-3*time.Hour))
		require.NoError(t, s.Write(context.Background(), b))
		require.Len(t, h.Readings(t, dev, "temperature", from, to), n)
	})
	t.Run("alert open and resolve events", func(t *testing.T) {
		s := h.New(t, nil)
		defer s.Close()
		dev := unique("al")
		b, _, _ := batch(dev, 2, time.Now().Add(-4*time.Hour))
		require.NoError(t, s.Write(context.Background(), b))
		resolved := b.Alerts[0]
		resolved.State = sensor.StateResolved
		resolved.TS = resolved.TS.Add(time.Minute)
		ts := resolved.TS
		resolved.ResolvedAt = &ts
		require.NoError(t, s.Write(context.Background(), sink.Batch{Alerts: []sensor.Alert{resolved}}))
		states := h.Alerts(t, dev)
		require.Len(t, states, 1)
		require.Equal(t, sensor.StateResolved, states[resolved.AlertID])
	})
	t.Run("server down returns an error", func(t *testing.T) {
		if h.Target == "" {
			t.Skip("an embedded store has no server to lose")
		}
		p := NewProxy(t, h.Target)
		s := h.New(t, p)
		defer s.Close()
		dev := unique("down")
		b, _, _ := batch(dev, 10, time.Now().Add(-5*time.Hour))
		require.NoError(t, s.Write(context.Background(), b), "writes through the proxy work while it is up")
		p.Cut()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b2, _, _ := batch(dev, 10, time.Now().Add(-6*time.Hour))
		require.Error(t, s.Write(ctx, b2))
	})
	t.Run("context cancellation is honoured", func(t *testing.T) {
		s := h.New(t, nil)
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b, _, _ := batch(unique("ctx"), 100, time.Now().Add(-7*time.Hour))
		err := s.Write(ctx, b)
		require.Error(t, err)
		require.True(t, errors.Is(err, context.Canceled), "want context.Canceled, got %v", err)
	})
}

func unique(what string) string {
	return fmt.Sprintf("sinktest-%s-%x", what, time.Now().UnixNano()&0xffffffffff)
}

// batch makes n readings of a device one second apart from start, and one
// open alert; from and to bound the readings.
func batch(dev string, n int, start time.Time) (b sink.Batch, from, to time.Time) {
	start = start.UTC().Truncate(time.Millisecond)
	for i := range n {
		b.Readings = append(b.Readings, sensor.Reading{
			DeviceID: dev, Site: "site-t", TS: start.Add(time.Duration(i) * time.Second), Seq: int64(i),
			Metrics: map[string]float64{"temperature": 20 + float64(i)/8, "humidity": 40 - float64(i)/16},
		})
	}
	at := start.Add(time.Duration(n/2) * time.Second)
	b.Alerts = []sensor.Alert{{
		AlertID: sensor.AlertID(dev, "temperature", at), DeviceID: dev, Site: "site-t", Metric: "temperature",
		Kind: "zscore", Severity: sensor.SeverityWarning, State: sensor.StateOpen, Score: 0.7, Value: 30,
		ExpectedLow: 18, ExpectedHigh: 24, TS: at, StartedAt: at, Message: `a "quoted", message\with \n escapes`,
	}}
	return b, start, start.Add(time.Duration(n) * time.Second)
}
