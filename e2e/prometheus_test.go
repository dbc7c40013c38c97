package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sensorflow/sensorflow/internal/testenv"
)

// startPrometheus runs the Prometheus version docker-compose.yml runs, with
// deploy/prometheus's configuration adapted to loopback: the same job and
// rule file, static targets instead of Docker's DNS, a 1 s scrape interval.
// It returns the base URL of its HTTP API and stops it when the test ends.
func startPrometheus(t *testing.T, targets ...string) string {
	t.Helper()
	bin := testenv.Tool(t, "prometheus")
	raw, err := os.ReadFile("../deploy/prometheus/prometheus.yml")
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	global := cfg["global"].(map[string]any)
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	rules, err := filepath.Abs("../deploy/prometheus/rules.yml")
	require.NoError(t, err)
	require.Equal(t, []any{"rules.yml"}, cfg["rule_files"])
	cfg["rule_files"] = []any{rules}
	jobs := cfg["scrape_configs"].([]any)
	require.Len(t, jobs, 1)
	job := jobs[0].(map[string]any)
	require.Contains(t, job, "dns_sd_configs")
	delete(job, "dns_sd_configs")
	job["static_configs"] = []any{map[string]any{"targets": targets}}

	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	out, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(conf, out, 0o600))
	addr := freeAddr(t)
	var logs syncBuffer
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 200*time.Millisecond, "prometheus never ready:\n%s", &logs)
	return base
}

// promQuery evaluates expr through Prometheus' HTTP API and returns the
// number of series in the result.
func promQuery(t *testing.T, base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		}
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		return 0, err
	}
	if err := json.Unmarshal(body.Bytes(), &r); err != nil {
		return 0, fmt.Errorf("%s: %s", err, body.String())
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", expr, r.Error)
	}
	require.Equal(t, "vector", r.Data.ResultType, expr)
	return len(r.Data.Result), nil
}

// checkDashboardPromQL evaluates every PromQL expression of the provisioned
// dashboards on a Prometheus that scrapes a running pipeline: each must
// return series, once Prometheus has scraped long enough for rate() windows.
// It also checks that Prometheus loaded the alerting rules and evaluates
// them without error.
func checkDashboardPromQL(t *testing.T, base string) {
	t.Helper()
	n := 0
	for _, q := range dashboardQueries(t) {
		if q.promQ == "" {
			continue
		}
		n++
		var got int
		var err error
		require.Eventually(t, func() bool {
			got, err = promQuery(t, base, q.promQ)
			return err == nil && got > 0
		}, time.Minute, 500*time.Millisecond, "%s: %s returned no series (err %v)", q.where, q.promQ, err)
	}
	require.Positive(t, n)
	t.Logf("prometheus: %d PromQL expressions of the dashboards returned series", n)

	resp, err := http.Get(base + "/api/v1/rules")
	require.NoError(t, err)
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				}
			}
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	rules := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			rules++
			require.NotEqual(t, "err", rule.Health, "rule %s: %s", rule.Name, rule.LastError)
		}
	}
	file, err := os.ReadFile("../deploy/prometheus/rules.yml")
	require.NoError(t, err)
	require.Equal(t, strings.Count(string(file), "- alert:"), rules, "the rules of deploy/prometheus/rules.yml are loaded")
}
