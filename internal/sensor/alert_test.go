package sensor

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAlert(t *testing.T) {
	const ok = `{"alert_id":"3f1c0a","device_id":"dev-1","site":"plant-1","metric":"temperature","kind":"zscore","severity":"warning","state":"open","ts":"2026-11-22T10:00:07Z"}`
	a, err := ParseAlert([]byte(ok))
	require.NoError(t, err)
	require.Equal(t, "dev-1", a.DeviceID)
	require.Equal(t, StateOpen, a.State)

	device := strings.Replace(ok, `"kind":"zscore"`, `"kind":"device","contributors":[{"metric":"flow","share":0.6,"z":-3.1},{"metric":"pressure","share":0.4,"z":2.5}]`, 1)
	a, err = ParseAlert([]byte(device))
	require.NoError(t, err)
	require.Equal(t, []Contributor{{Metric: "flow", Share: 0.6, Z: -3.1}, {Metric: "pressure", Share: 0.4, Z: 2.5}}, a.Contributors)
	many := `"contributors":[` + strings.Repeat(`{"metric":"flow"},`, MaxContributors) + `{"metric":"flow"}]`

	for _, tc := range []struct{ name, payload, want string }{
		{"not json", `{"alert_id":`, "not valid JSON"},
		{"trailing data", ok + ` {}`, "data after"},
		{"trailing brace", ok + `}`, "data after"},
		{"unknown field", strings.Replace(ok, `"kind"`, `"extra":1,"kind"`, 1), "unknown field"},
		{"wildcard device", strings.Replace(ok, `"dev-1"`, `"#"`, 1), "device_id has a forbidden character"},
		{"topic level in site", strings.Replace(ok, `"plant-1"`, `"a/b"`, 1), "site has a forbidden character"},
		{"empty site", strings.Replace(ok, `"plant-1"`, `""`, 1), "site is empty"},
		{"bad metric", strings.Replace(ok, `"temperature"`, `"Temp\n"`, 1), "metric name"},
		{"empty id", strings.Replace(ok, `"3f1c0a"`, `""`, 1), "alert_id must be"},
		{"id with escape", strings.Replace(ok, `"3f1c0a"`, `"a\u001b[2J"`, 1), "alert_id has a forbidden character"},
		{"bad contributor", strings.Replace(device, `"metric":"flow"`, `"metric":"Flow/1"`, 1), "contributors: invalid_metric_name"},
		{"too many contributors", strings.Replace(ok, `"kind"`, many+`,"kind"`, 1), "contributors, at most"},
		{"unknown state", strings.Replace(ok, `"open"`, `"maybe"`, 1), "neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAlert([]byte(tc.payload))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
