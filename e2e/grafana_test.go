package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/stretchr/testify/require"
)

// dashboardQuery is one query of a provisioned Grafana dashboard.
type dashboardQuery struct {
	where string
	flux  string // InfluxDB datasource
	promQ string // Prometheus datasource
}

// dashboardQueries reads every panel target, template variable and
// annotation query of deploy/grafana/dashboards.
func dashboardQueries(t *testing.T) []dashboardQuery {
	files, err := filepath.Glob("../deploy/grafana/dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out []dashboardQuery
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Query string `json:"query"`
					Expr  string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query string `json:"query"`
				} `json:"list"`
			} `json:"templating"`
			Annotations struct {
				List []struct {
					Name   string `json:"name"`
					Target struct {
						Query string `json:"query"`
					} `json:"target"`
				} `json:"list"`
			} `json:"annotations"`
		}
		require.NoError(t, json.Unmarshal(raw, &d))
		base := filepath.Base(f)
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out = append(out, dashboardQuery{where: base + ": " + p.Title, flux: tg.Query, promQ: tg.Expr})
			}
		}
		for _, v := range d.Templating.List {
			out = append(out, dashboardQuery{where: base + ": variable " + v.Name, flux: v.Query})
		}
		for _, a := range d.Annotations.List {
			if a.Target.Query != "" {
				out = append(out, dashboardQuery{where: base + ": annotation " + a.Name, flux: a.Target.Query})
			}
		}
	}
	return out
}

// checkDashboardFlux runs every Flux query of the dashboards, with Grafana's
// macros and the variables substituted, against the real InfluxDB the
// pipeline filled, and requires data from each.
func checkDashboardFlux(t *testing.T, s *stack, site, device string) {
	cfg := s.influx
	cl := influxdb2.NewClient(cfg.URL, cfg.Token)
	defer cl.Close()
	r := strings.NewReplacer("v.timeRangeStart", "-4h", "v.timeRangeStop", "now()", "v.windowPeriod", "10s",
		"${site}", site, "${device}", device, `from(bucket: "sensorflow")`, `from(bucket: "`+cfg.Bucket+`")`)
	n := 0
	for _, q := range dashboardQueries(t) {
		if q.flux == "" || strings.HasSuffix(q.where, incidentsPanel) {
			continue // no incident in this pipeline: TestIncidentsOnRealServers checks that panel
		}
		n++
		res, err := cl.QueryAPI(cfg.Org).Query(context.Background(), r.Replace(q.flux))
		require.NoError(t, err, q.where)
		require.True(t, res.Next(), "%s returned no data (%v)", q.where, res.Err())
		res.Close()
	}
	t.Logf("grafana: %d Flux queries of the dashboards returned data", n)
}

// incidentsPanel is the title of the alerts dashboard's incidents table.
const incidentsPanel = ": Site incidents"

// checkDashboardPanel runs the Flux queries of the panels whose title ends
// with suffix and requires data from each.
func checkDashboardPanel(t *testing.T, s *stack, suffix string) {
	cl := influxdb2.NewClient(s.influx.URL, s.influx.Token)
	defer cl.Close()
	r := strings.NewReplacer("v.timeRangeStart", "-4h", "v.timeRangeStop", "now()", `from(bucket: "sensorflow")`, `from(bucket: "`+s.influx.Bucket+`")`)
	n := 0
	for _, q := range dashboardQueries(t) {
		if q.flux == "" || !strings.HasSuffix(q.where, suffix) {
			continue
		}
		n++
		res, err := cl.QueryAPI(s.influx.Org).Query(context.Background(), r.Replace(q.flux))
		require.NoError(t, err, q.where)
		require.True(t, res.Next(), "%s returned no data (%v)", q.where, res.Err())
		res.Close()
	}
	require.NotZero(t, n, "no panel titled %q", suffix)
}

var promMetric = regexp.MustCompile(`\b((?:sensorflow|process|go)_[a-z_]+)\b`)

// checkDashboardMetrics requires every Prometheus metric a dashboard uses in
// the /metrics output of a running Sensorflow process.
func checkDashboardMetrics(t *testing.T, metrics string) {
	n := 0
	for _, q := range dashboardQueries(t) {
		for _, m := range promMetric.FindAllString(q.promQ, -1) {
			n++
			require.Regexp(t, `(?m)^`+regexp.QuoteMeta(m)+`[{ ]`, metrics, "%s uses %s, which no running service exports", q.where, m)
		}
	}
	require.Positive(t, n)
	t.Logf("grafana: %d Prometheus metric uses of the dashboards are exported", n)
}
