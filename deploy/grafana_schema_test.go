package deploy_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/stretchr/testify/require"
)

// Every provisioned dashboard decodes strictly into the types Grafana's
// Foundation SDK generates from Grafana's own schema: an unknown field or a
// wrong type anywhere fails, and so does a panel's options that do not fit
// its panel type's types, or a panel type the SDK's Grafana does not know.
func TestDashboardsMatchGrafanasSchema(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	files, err := filepath.Glob("grafana/dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, decodeStrict(raw), f)
		var d Dashboard
		require.NoError(t, json.Unmarshal(raw, &d), f)
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			_, known := cog.ConfigForPanelcfgVariant(p.Type)
			require.True(t, known, "%s: panel %q has type %q, which Grafana does not know", f, p.Title, p.Type)
		}
	}
}

// The check itself fails on what it is there to catch.
func TestSchemaCheckCatchesMistakes(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for _, tt := range []struct{ name, raw, want string }{
		{"misspelled option", `{"title":"x","panels":[{"type":"stat","title":"p","gridPos":{"h":4,"w":4,"x":0,"y":0},"options":{"reduceOptionz":{}}}]}`, "reduceOptionz"},
		{"misspelled panel field", `{"title":"x","panels":[{"type":"stat","title":"p","gridPoz":{"h":4,"w":4,"x":0,"y":0}}]}`, "gridPoz"},
		{"wrong type", `{"title":"x","panels":[{"type":"stat","title":"p","gridPos":{"h":"four","w":4,"x":0,"y":0}}]}`, "gridPos"},
		{"unknown dashboard field", `{"title":"x","panelz":[]}`, "panelz"},
	} {
		require.ErrorContains(t, decodeStrict([]byte(tt.raw)), tt.want, tt.name)
	}
	_, known := cog.ConfigForPanelcfgVariant("graph-v0")
	require.False(t, known, "an unknown panel type is not known")
}

// decodeStrict checks a dashboard against the SDK's types. The SDK (v0.0.22)
// returns its error list as an error even when the list is empty, which is
// no error; nested, that also leaves decoded panels out of the result, so
// this is a check only, and the panel types are read from the JSON itself.
func decodeStrict(raw []byte) error {
	//lint:ignore SA1019 the provisioned dashboards are in the classic JSON model that Grafana 11 provisions; dashboardv2 is the newer model
	var d dashboard.Dashboard
	err := d.UnmarshalJSONStrict(raw)
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}
