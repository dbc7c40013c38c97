package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Grafana panel types the dashboards may use (core panels of Grafana 11).
var grafanaPanelTypes = map[string]bool{"stat": true, "timeseries": true, "table": true, "bargauge": true, "state-timeline": true, "gauge": true, "text": true}

// Every dashboard is JSON that Grafana's file provisioning accepts (unique
// uid, title, panels with a known type, a position and targets with a
// refId), and every datasource it names is provisioned.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
		} `yaml:"datasources"`
	}
	raw, err := os.ReadFile("grafana/provisioning/datasources/sensorflow.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &ds))
	require.Equal(t, 1, ds.APIVersion)
	provisioned := map[string]string{}
	for _, d := range ds.Datasources {
		require.NotEmpty(t, d.UID)
		provisioned[d.UID] = d.Type
	}
	var prov struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	raw, err = os.ReadFile("grafana/provisioning/dashboards/sensorflow.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &prov))
	require.Equal(t, "/var/lib/grafana/dashboards", prov.Providers[0].Options.Path, "where compose mounts deploy/grafana/dashboards")

	files, err := filepath.Glob("grafana/dashboards/*.json")
	require.NoError(t, err)
	require.Len(t, files, 4)
	uids := map[string]bool{}
	checkDS := func(where string, d map[string]any) {
		require.NotNil(t, d, "%s has no datasource", where)
		uid, _ := d["uid"].(string)
		if d["type"] == "grafana" {
			return
		}
		require.Contains(t, provisioned, uid, "%s uses datasource %q, which is not provisioned", where, uid)
		require.Equal(t, provisioned[uid], d["type"], where)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var dash Dashboard
		require.NoError(t, json.Unmarshal(raw, &dash), f)
		require.NotEmpty(t, dash.Title, f)
		require.False(t, uids[dash.UID], "duplicate uid %s", dash.UID)
		uids[dash.UID] = true
		require.Positive(t, dash.SchemaVersion, f)
		require.NotEmpty(t, dash.Panels, f)
		ids := map[int]bool{}
		for _, p := range dash.Panels {
			where := f + ": " + p.Title
			require.True(t, grafanaPanelTypes[p.Type], "%s: panel type %q", where, p.Type)
			require.False(t, ids[p.ID], "%s: duplicate panel id", where)
			ids[p.ID] = true
			require.Positive(t, p.GridPos.W, where)
			require.Positive(t, p.GridPos.H, where)
			checkDS(where, p.Datasource)
			require.NotEmpty(t, p.Targets, where)
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.RefID, where)
				require.True(t, tg.Query != "" || tg.Expr != "", "%s: empty query", where)
			}
		}
		for _, v := range dash.Templating.List {
			checkDS(f+": variable "+v.Name, v.Datasource)
		}
		for _, a := range dash.Annotations.List {
			checkDS(f+": annotation "+a.Name, a.Datasource)
		}
	}
}

// Dashboard is the part of Grafana's dashboard model the tests read.
type Dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID         int            `json:"id"`
		Title      string         `json:"title"`
		Type       string         `json:"type"`
		Datasource map[string]any `json:"datasource"`
		GridPos    struct{ X, Y, W, H int }
		Targets    []struct {
			RefID string `json:"refId"`
			Query string `json:"query"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string         `json:"name"`
			Query      string         `json:"query"`
			Datasource map[string]any `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string         `json:"name"`
			Datasource map[string]any `json:"datasource"`
			Target     struct {
				Query string `json:"query"`
			} `json:"target"`
		} `json:"list"`
	} `json:"annotations"`
}
