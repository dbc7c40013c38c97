package simulator

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

func TestPlay(t *testing.T) {
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	cfg.Devices, cfg.Count, cfg.Seed, cfg.AnomalyRate, cfg.AnomalyWarmup = 10, 5000, 3, 0.01, 50
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	play := func() ([]sensor.Reading, []GroundTruth) {
		var rs []sensor.Reading
		truth, err := Play(cfg, start, func(r *sensor.Reading) { rs = append(rs, *r) })
		require.NoError(t, err)
		return rs, truth
	}
	rs, truth := play()
	rs2, truth2 := play()
	require.Equal(t, rs, rs2, "deterministic for a seed")
	require.Equal(t, truth, truth2)

	dropped := 0
	kinds := map[string]bool{}
	for _, g := range truth {
		kinds[g.Kind] = true
		require.False(t, g.End.Before(g.Start), "%+v", g)
		if g.Kind == AnomalyDropout {
			dropped += int(g.End.Sub(g.Start)/cfg.Interval) + 1
		}
	}
	require.Len(t, kinds, len(anomalyKinds), "every kind is injected: %v", kinds)
	// Count includes the readings a dropout swallowed (about: intervals jitter).
	require.InDelta(t, int(cfg.Count), len(rs)+dropped, float64(len(truth)))
	for i := 1; i < len(rs); i++ {
		require.False(t, rs[i].TS.Before(rs[i-1].TS), "virtual-time order")
	}

	cfg.Count, cfg.Duration = 0, time.Minute
	rs, _ = play()
	require.NotEmpty(t, rs)
	require.False(t, rs[len(rs)-1].TS.After(start.Add(time.Minute)))
	cfg.Duration = 0
	_, err := Play(cfg, start, func(*sensor.Reading) {})
	require.Error(t, err)
}
