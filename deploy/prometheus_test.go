package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/testenv"
)

// promtool of the Prometheus version docker-compose.yml runs accepts the
// compose stack's configuration and its rule file.
func TestPrometheusConfig(t *testing.T) {
	out, err := exec.Command(testenv.Tool(t, "promtool"), "check", "config", "prometheus/prometheus.yml").CombinedOutput()
	require.NoError(t, err, "%s", out)
	rules, err := os.ReadFile("prometheus/rules.yml")
	require.NoError(t, err)
	require.Contains(t, string(out), fmt.Sprintf("SUCCESS: %d rules found", strings.Count(string(rules), "- alert:")))
}

// The alerting rules fire on the series that should raise them, with the
// labels and summaries written in rules.yml, and stay quiet otherwise.
func TestPrometheusRules(t *testing.T) {
	cmd := exec.Command(testenv.Tool(t, "promtool"), "test", "rules", "rules_test.yml")
	cmd.Dir = "prometheus"
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "SUCCESS")
}
