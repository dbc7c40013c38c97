package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

func TestFormatAlertKeepsControlCharactersOffTheTerminal(t *testing.T) {
	a := sensor.Alert{AlertID: "3f1c", DeviceID: "dev-1", Site: "plant-1", Metric: "temperature", State: sensor.StateOpen,
		Kind: "zscore", Severity: "warning", TS: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	require.Equal(t, "2026-11-22T10:00:00Z OPEN     warning  zscore   plant-1/dev-1 temperature=0 expected [0, 0] score 0.00 3f1c", FormatAlert(&a))

	a.Kind, a.Severity = "z\x1b[2Jscore", "warn ing\n"
	line := FormatAlert(&a)
	require.NotContains(t, line, "\x1b")
	require.NotContains(t, line, "\n")
	require.Contains(t, line, `"z\x1b[2Jscore"`)
	require.Contains(t, line, `"warn ing\n"`)
}

func TestFormatIncident(t *testing.T) {
	a := sensor.Alert{AlertID: "9b0e", DeviceID: sensor.SiteDevice, Site: "plant-1", Metric: "readings", State: sensor.StateOpen,
		Kind: "outage", Severity: "critical", TS: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Members: []string{"d1", "d2", "d3", "d4", "d5", "d6"}, MemberCount: 7}
	require.Equal(t, "2026-11-22T10:00:00Z OPEN     critical outage   plant-1 readings: 7 devices (d1,d2,d3,d4,d5,…) 9b0e", FormatAlert(&a))
	a.State, a.Suppressed, a.Members, a.MemberCount = sensor.StateResolved, 12, []string{"d1", "d2"}, 2
	require.Equal(t, "2026-11-22T10:00:00Z RESOLVED critical outage   plant-1 readings: 2 devices (d1,d2), 12 device alerts grouped 9b0e", FormatAlert(&a))
}
