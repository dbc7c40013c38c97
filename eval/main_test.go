package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAlertsAsScores(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
	require.NoError(t, os.WriteFile(from, []byte("timestamp,value,anomaly_score,alert\n2014-04-01 00:00:00,1,0.7,0\n2014-04-01 00:05:00,2,0.1,1\n"), 0o644))
	require.NoError(t, alertsAsScores(from, to))
	got, err := os.ReadFile(to)
	require.NoError(t, err)
	require.Equal(t, "timestamp,value,anomaly_score,alert\n2014-04-01 00:00:00,1,0,0\n2014-04-01 00:05:00,2,1,1\n", string(got))

	require.NoError(t, os.WriteFile(from, []byte("timestamp,value\n2014-04-01 00:00:00,1\n"), 0o644))
	require.ErrorContains(t, alertsAsScores(from, to), "no anomaly_score and alert columns")
}
