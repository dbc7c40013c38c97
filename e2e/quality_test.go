package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/eval/quality"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/simulator"
)

// TestDetectionQuality runs the live pipeline (simulator → Mosquitto →
// bridge → Kafka → processor) over a fleet with injected anomalies and
// scores the alerts on Kafka against the simulator's ground truth, event by
// event: an anomaly is found when an alert for its device and metric (any
// metric for a dropout) opens inside its window, or within a few intervals
// after it for what shows when the anomaly ends (a dropout's gap); an
// alert that matches no anomaly is a false one. It prints precision,
// recall, per-kind recall and the median delay in readings, and writes them
// to out/eval/live.json; `make eval` runs it.
func TestDetectionQuality(t *testing.T) {
	s := newStack(t)
	s.cassandra.Enabled = false // quality needs no archive
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s.startServices(t, ctx)

	s.sim.Devices = 60
	s.sim.Count = 60 * 800
	s.sim.Speed = 0
	s.sim.AnomalyRate = 0.004
	s.sim.AnomalyWarmup = 100
	s.sim.Seed = 11
	if v, err := strconv.ParseUint(os.Getenv("SENSORFLOW_EVAL_SEED"), 10, 64); err == nil {
		s.sim.Seed = v // another fleet: make eval SEED=n
	}
	s.sim.Start = time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	sim, err := simulator.New(s.sim, testLogger(t).With("component", "simulator"), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, sim.Run(ctx))
	st := sim.Stats()
	require.Equal(t, st.Published, st.Acked)
	truth := sim.Truth()
	require.NotEmpty(t, truth)

	// Wait until the processor has every reading, then read the alerts.
	require.Eventually(t, func() bool {
		got := influxCounts(t, s)
		n := int64(0)
		for _, c := range got {
			n += int64(c)
		}
		return n == st.Acked
	}, 5*time.Minute, time.Second, "the processor never stored every reading")
	// The same fleet played offline through the same detector raises the
	// same alerts: the pipeline changes nothing the detector sees, and
	// make eval's offline fleets measure what the live processor does.
	start, err := time.Parse(time.RFC3339, s.sim.Start)
	require.NoError(t, err)
	off, offTruth, err := quality.Offline(s.sim, start, s.processor.Detect)
	require.NoError(t, err)
	require.Equal(t, truth, offTruth, "the offline fleet's anomalies")
	key := func(as []sensor.Alert) []string {
		out := make([]string, len(as))
		for i, a := range as {
			out[i] = fmt.Sprintf("%s %s %s %s %s", a.AlertID, a.DeviceID, a.Metric, a.Kind, a.StartedAt.Format(time.RFC3339Nano))
		}
		slices.Sort(out)
		return out
	}
	// Gap alerts wait up to -incidents.hold in the incidents stage before
	// they are published: read until the alerts topic has them all.
	var opened []sensor.Alert
	read := func() bool {
		opened = opened[:0]
		for _, m := range readAll(t, s.kafka.Brokers, s.kafka.AlertsTopic) {
			var a sensor.Alert
			require.NoError(t, json.Unmarshal(m.Value, &a))
			if a.State == sensor.StateOpen {
				opened = append(opened, a)
			}
		}
		return slices.Equal(key(off), key(opened))
	}
	for end := time.Now().Add(time.Minute); !read() && time.Now().Before(end); time.Sleep(time.Second) {
	}
	q := quality.Score(truth, opened, s.sim.Interval)
	t.Logf("seed %d: live detection: %s", s.sim.Seed, q)

	require.Equal(t, key(off), key(opened), "alerts opened offline and live")
	if dir := os.Getenv("SENSORFLOW_EVAL_OUT"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		b, _ := json.MarshalIndent(q, "", "  ")
		require.NoError(t, os.WriteFile(filepath.Join(dir, "live.json"), b, 0o644))
	}
	// Floors well under the goal (0.95 each): a regression fails here, the
	// figures themselves are reported by make eval.
	require.GreaterOrEqual(t, q.Recall, 0.7, "recall")
	require.GreaterOrEqual(t, q.Precision, 0.7, "precision")
}
