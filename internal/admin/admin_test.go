package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// /healthz answers while the process lives; /readyz only while every check
// passes and until shutdown begins; /metrics serves the injected registry.
func TestEndpoints(t *testing.T) {
	s := New("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var kafkaUp atomic.Bool
	s.Ready("bridge", func() error {
		if !kafkaUp.Load() {
			return errors.New("kafka not reachable")
		}
		return nil
	})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sensorflow_test_things_total", Help: "Things."})
	s.Registry().MustRegister(c)
	c.Add(3)
	addr, err := s.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + addr.String()

	code, _ := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "kafka not reachable", "says which check fails")
	kafkaUp.Store(true)
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, Probe(base+"/readyz", time.Second))
	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "sensorflow_test_things_total 3")
	require.True(t, strings.Contains(body, "go_goroutines"), "runtime collectors registered")

	s.ShuttingDown()
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready from the first shutdown signal")
	require.Error(t, Probe(base+"/readyz", time.Second))
	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)

	cancel()
	require.NoError(t, <-done)
}
