package quality

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/simulator"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestScore(t *testing.T) {
	truth := []simulator.GroundTruth{
		{DeviceID: "a", Metric: "temperature", Kind: simulator.AnomalySpike, Start: at(100), End: at(100)},
		{DeviceID: "a", Metric: "*", Kind: simulator.AnomalyDropout, Start: at(200), End: at(229)},
		{DeviceID: "b", Metric: "humidity", Kind: simulator.AnomalyDrift, Start: at(300), End: at(419)},
		{DeviceID: "c", Metric: "voltage", Kind: simulator.AnomalyStuck, Start: at(990), End: at(999), Cut: true},
	}
	opened := []sensor.Alert{
		{DeviceID: "a", Metric: "temperature", StartedAt: at(100)}, // the spike, no delay
		{DeviceID: "a", Metric: "pressure", StartedAt: at(233)},    // the dropout's gap, 4 s after it
		{DeviceID: "b", Metric: "humidity", StartedAt: at(299)},    // before the drift: false
		{DeviceID: "b", Metric: "temperature", StartedAt: at(350)}, // another metric: false
		{DeviceID: "c", Metric: "voltage", StartedAt: at(995)},     // the cut anomaly: neither found nor false
	}
	q := Score(truth, opened, time.Second)
	require.Equal(t, 3, q.Anomalies)
	require.Equal(t, 2, q.Found)
	require.Equal(t, 5, q.Alerts)
	require.Equal(t, 2, q.FalseAlerts)
	require.InDelta(t, 0.6, q.Precision, 1e-9)
	require.InDelta(t, 2.0/3, q.Recall, 1e-9)
	require.Equal(t, 33.0, q.MedianDelayReadings) // delays 0 and 33: the upper median
	require.Equal(t, map[string]string{"spike": "1/1", "dropout": "1/1", "drift": "0/1"}, q.RecallByKind)

	p := q.Add(Score(truth[2:3], []sensor.Alert{{DeviceID: "b", Metric: "humidity", StartedAt: at(310)}}, time.Second))
	require.Equal(t, 4, p.Anomalies)
	require.Equal(t, 3, p.Found)
	require.Equal(t, "1/2", p.RecallByKind["drift"])
	require.InDelta(t, 4.0/6, p.Precision, 1e-9)
}

func TestOffline(t *testing.T) {
	var sim simulator.Config
	sim.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	sim.Devices, sim.Count, sim.Seed, sim.AnomalyRate, sim.AnomalyWarmup = 12, 12*800, 5, 0.004, 100
	opened, truth, err := Offline(sim, t0, detect.DefaultConfig())
	require.NoError(t, err)
	require.NotEmpty(t, truth)
	q := Score(truth, opened, sim.Interval)
	t.Logf("%s", q)
	// Floors far under the figures make eval reports: a broken detector
	// or simulator fails here.
	require.Greater(t, q.Recall, 0.7)
	require.Greater(t, q.Precision, 0.7)
}
