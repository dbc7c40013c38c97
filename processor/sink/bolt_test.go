package sink_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
	"github.com/sensorflow/sensorflow/processor/sink/sinktest"
)

func TestBoltContract(t *testing.T) {
	s, err := sink.OpenBolt(filepath.Join(t.TempDir(), "store.db"), 24*time.Hour)
	require.NoError(t, err)
	defer s.Close()
	sinktest.Run(t, sinktest.Harness{
		RequestSize: 1000,
		New:         func(*testing.T, *sinktest.Proxy) sink.Sink { return nopClose{s} },
		Readings: func(t *testing.T, device, metric string, from, to time.Time) map[int64]float64 {
			v, err := s.Values(device, metric, from, to)
			require.NoError(t, err)
			return v
		},
		Alerts: func(t *testing.T, device string) map[string]string {
			all, err := s.Alerts()
			require.NoError(t, err)
			out := map[string]string{}
			for _, a := range all {
				if a.DeviceID == device {
					out[a.AlertID] = a.State
				}
			}
			return out
		},
	})
}

// nopClose shares one store between the suite's sinks.
type nopClose struct{ *sink.Bolt }

func (nopClose) Close() error { return nil }

func TestBoltReplayAndPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := sink.OpenBolt(path, time.Hour)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Millisecond)
	b := sink.Batch{Scores: []float64{0.1, 0.2, 0.3, 0.4}}
	for i, at := range []time.Duration{-2 * time.Hour, -time.Minute} {
		b.Readings = append(b.Readings, sensor.Reading{DeviceID: "d", Site: "s", TS: now.Add(at), Metrics: map[string]float64{"a": float64(i), "b": 10 + float64(i)}})
	}
	b.Alerts = []sensor.Alert{{AlertID: "x", DeviceID: "d", Site: "s", Metric: "a", State: sensor.StateOpen, TS: now.Add(-time.Minute)}}
	require.NoError(t, s.Write(context.Background(), b))
	require.NoError(t, s.Close())

	// History survives reopening.
	s, err = sink.OpenBolt(path, time.Hour)
	require.NoError(t, err)
	defer s.Close()
	var got []sink.Batch
	require.NoError(t, s.Replay(now.Add(-3*time.Hour), func(b sink.Batch) error { got = append(got, b); return nil }))
	require.Len(t, got, 2) // readings, then alerts
	require.Len(t, got[0].Readings, 2)
	require.Equal(t, map[string]float64{"a": 1, "b": 11}, got[0].Readings[1].Metrics)
	require.Equal(t, "s", got[0].Readings[1].Site)
	require.Equal(t, []float64{0.1, 0.2, 0.3, 0.4}, got[0].Scores)
	require.Len(t, got[1].Alerts, 1)

	n, err := s.Prune(now)
	require.NoError(t, err)
	require.Equal(t, 2, n, "the two values from two hours ago")
	got = nil
	require.NoError(t, s.Replay(now.Add(-3*time.Hour), func(b sink.Batch) error { got = append(got, b); return nil }))
	require.Len(t, got[0].Readings, 1)
}
