package sink_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// flaky fails its first fails writes, then stores.
type flaky struct {
	mu       sync.Mutex
	fails    int
	attempts int
	stored   int
	closeErr error
}

func (f *flaky) Write(_ context.Context, b sink.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.fails > 0 {
		f.fails--
		return errors.New("server down")
	}
	f.stored += b.Len()
	return nil
}

func (f *flaky) Close() error { return f.closeErr }

func newFanout(t *testing.T, reg prometheus.Registerer, sinks map[string]*flaky) *sink.Fanout {
	f := sink.NewFanout(slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	for _, name := range []string{"a", "b"} {
		require.NoError(t, f.Open(context.Background(), sink.Fixed(name, sinks[name])))
	}
	return f
}

func TestFanout(t *testing.T) {
	b := sink.Batch{Readings: []sensor.Reading{{DeviceID: "d1"}, {DeviceID: "d2"}}}
	tests := []struct {
		name                   string
		failsA, failsB         int
		wantAttempt, wantStore [2]int
	}{
		{name: "both healthy", wantAttempt: [2]int{1, 1}, wantStore: [2]int{2, 2}},
		{name: "a failing sink is retried alone", failsB: 2, wantAttempt: [2]int{1, 3}, wantStore: [2]int{2, 2}},
		{name: "both failing", failsA: 1, failsB: 1, wantAttempt: [2]int{2, 2}, wantStore: [2]int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sinks := map[string]*flaky{"a": {fails: tt.failsA}, "b": {fails: tt.failsB}}
			reg := prometheus.NewRegistry()
			f := newFanout(t, reg, sinks)
			require.Equal(t, 2, f.Len())
			require.NoError(t, f.Write(context.Background(), b))
			for i, name := range []string{"a", "b"} {
				require.Equal(t, tt.wantAttempt[i], sinks[name].attempts, name)
				require.Equal(t, tt.wantStore[i], sinks[name].stored, name)
			}
			require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sink_writes_total Batch writes to each sink, by result.
# TYPE sink_writes_total counter
sink_writes_total{result="error",sink="a"} `+strconv.Itoa(tt.failsA)+`
sink_writes_total{result="error",sink="b"} `+strconv.Itoa(tt.failsB)+`
sink_writes_total{result="ok",sink="a"} 1
sink_writes_total{result="ok",sink="b"} 1
`), "sink_writes_total"))
		})
	}
}

// A sink that never recovers holds Write until the context ends: the batch
// is never reported stored, so its offsets are never committed.
func TestFanoutNeverSkipsAFailingSink(t *testing.T) {
	sinks := map[string]*flaky{"a": {}, "b": {fails: 1 << 30}}
	f := newFanout(t, prometheus.NewRegistry(), sinks)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := f.Write(ctx, sink.Batch{Readings: []sensor.Reading{{DeviceID: "d"}}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, sinks["a"].stored)
	require.Zero(t, sinks["b"].stored)
	require.Greater(t, sinks["b"].attempts, 1)
}

func TestFanoutEmptyBatchAndClose(t *testing.T) {
	sinks := map[string]*flaky{"a": {}, "b": {closeErr: errors.New("boom")}}
	f := newFanout(t, prometheus.NewRegistry(), sinks)
	require.NoError(t, f.Write(context.Background(), sink.Batch{}))
	require.Zero(t, sinks["a"].attempts, "an empty batch writes nothing")
	require.EqualError(t, f.Close(), "closing sink b: boom")
	require.Zero(t, f.Len())
}

func TestFanoutOpenError(t *testing.T) {
	f := sink.NewFanout(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	err := f.Open(context.Background(), sink.Spec{Name: "x", Open: func(context.Context) (sink.Sink, error) { return nil, errors.New("refused") }})
	require.EqualError(t, err, "opening sink x: refused")
}
