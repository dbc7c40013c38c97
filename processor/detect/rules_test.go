package detect

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

func writeRules(t *testing.T, text string) string {
	f := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(f, []byte(text), 0o644))
	return f
}

func TestRulesApplyPerSeries(t *testing.T) {
	f := writeRules(t, `
defaults:
  warmup: 10
rules:
  - metric: temperature
    device: "machine-*"
    max: 100
  - metric: temperature
    site: cold-*
    max: 10
    stuck_after: 0
  - metric: requests
    extremes: false
`)
	cfg, err := LoadRules(f, DefaultConfig())
	require.NoError(t, err)
	require.Equal(t, 10, cfg.Warmup)
	require.Len(t, cfg.Rules, 3)
	d := New(cfg)
	reading := func(dev, site string, v float64) []sensor.Alert {
		r := sensor.Reading{DeviceID: dev, Site: site, TS: time.Unix(1, 0), Metrics: map[string]float64{"temperature": v}}
		out, _ := d.Observe(&r, nil, nil)
		return out
	}
	// The machine's limit applies to machines only.
	require.Len(t, reading("machine-1", "plant", 120), 1, "above the machine limit")
	require.Empty(t, reading("env-1", "plant", 120), "no limit for other devices")
	// A later rule overrides an earlier one where both match.
	require.Len(t, reading("machine-2", "cold-1", 50), 1, "the cold-site limit wins")
	require.Equal(t, 10.0, d.series[seriesKey{"machine-2", "temperature"}].cfg.Limits["temperature"].Max)
	require.Zero(t, d.series[seriesKey{"machine-2", "temperature"}].cfg.StuckAfter)
	require.Same(t, &d.cfg, d.series[seriesKey{"env-1", "temperature"}].cfg, "series no rule matches share the detector's settings")
	require.True(t, d.series[seriesKey{"env-1", "temperature"}].cfg.Extremes)
	require.False(t, d.forSeries("gw-1", "plant", "requests").Extremes, "extremes off where the rule says so")
}

func TestRulesErrorsNameFileLineAndField(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"rules:\n  - metric: temperature\n    z: -1\n", ":3: rules[0].z: must be positive"},
		{"rules:\n  - metric: temperature\n    min: 5\n    max: 1\n", ":3: rules[0].min: is above max 1"},
		{"rules:\n  - metric: \"[\"\n", ":2: rules[0].metric: bad pattern"},
		{"defaults:\n  open_score: 2\n", ":2: defaults.open_score: must be in (0,1]"},
		{"rules:\n  - metric: x\n    treshold: 1\n", "line 3: field treshold not found"},
		{"defaults:\n  resolve_score: 0.7\n", "defaults: detect.resolve-score must be in [0, open-score)"},
		{"rules: [", "rules.yaml"},
	} {
		f := writeRules(t, tt.text)
		_, err := LoadRules(f, DefaultConfig())
		require.Error(t, err, tt.text)
		require.Contains(t, err.Error(), tt.want, tt.text)
		require.Contains(t, err.Error(), "rules.yaml", "names the file")
	}
	_, err := LoadRules(filepath.Join(t.TempDir(), "missing.yaml"), DefaultConfig())
	require.ErrorContains(t, err, "missing.yaml")
}

func TestEmptyRulesFileKeepsFlags(t *testing.T) {
	cfg, err := LoadRules(writeRules(t, "# nothing yet\n"), DefaultConfig())
	require.NoError(t, err)
	require.Equal(t, DefaultConfig().Warmup, cfg.Warmup)
	require.Empty(t, cfg.Rules)
}
