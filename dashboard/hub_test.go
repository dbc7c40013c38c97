package dashboard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
)

func TestHub(t *testing.T) {
	h := NewHub(3, 100)
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var b sink.Batch
	for i := range 5 {
		b.Readings = append(b.Readings, sensor.Reading{DeviceID: "d1", Site: "s1", TS: t0.Add(time.Duration(i) * time.Second),
			Metrics: map[string]float64{"a": float64(i), "b": -float64(i)}})
		b.Scores = append(b.Scores, 0.1*float64(i), 0.9)
	}
	b.Readings = append(b.Readings, sensor.Reading{DeviceID: "d2", Site: "s2", TS: t0, Metrics: map[string]float64{"a": 1}})
	b.Scores = append(b.Scores, 0)
	b.Alerts = []sensor.Alert{
		{AlertID: "x", DeviceID: "d1", Metric: "b", State: sensor.StateOpen, Severity: sensor.SeverityCritical, TS: t0},
		{AlertID: "y", DeviceID: "d2", Metric: "a", State: sensor.StateOpen, Severity: sensor.SeverityWarning, TS: t0},
		{AlertID: "y", DeviceID: "d2", Metric: "a", State: sensor.StateResolved, Severity: sensor.SeverityWarning, TS: t0.Add(time.Second)},
	}
	events, cancel := h.subscribe()
	defer cancel()
	require.NoError(t, h.Write(context.Background(), b))

	f := h.Fleet(10)
	require.Equal(t, 2, f.Devices)
	require.EqualValues(t, 6, f.Readings)
	require.Equal(t, 1, f.OpenCritical)
	require.Equal(t, 0, f.OpenWarning)
	require.Equal(t, "d1", f.Top[0].DeviceID, "the device with an open alert comes first")
	require.Equal(t, 0.9, f.Top[0].Score)

	d, ok := h.Device("d1")
	require.True(t, ok)
	require.Equal(t, []string{"a", "b"}, d.Metrics)
	require.Len(t, d.Series["a"], 3, "a ring of 3 points")
	require.Equal(t, Point{T: t0.Add(4 * time.Second).UnixMilli(), V: 4, S: 0.4}, d.Series["a"][2], "oldest first, newest last")
	require.InDelta(t, 0.2, d.Series["a"][0].S, 1e-9)
	require.Len(t, d.Alerts, 1)
	_, ok = h.Device("nope")
	require.False(t, ok)

	require.Len(t, events, 3, "every alert event is pushed to subscribers")
	a := h.Alerts(2)
	require.Equal(t, sensor.StateResolved, a[0].State, "newest first")

	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	for _, path := range []string{"/", "/app.js", "/style.css", "/api/fleet", "/api/device?id=d1", "/api/alerts"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	resp, err := http.Get(srv.URL + "/api/device?id=unknown")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = http.Get(srv.URL + "/api/fleet")
	require.NoError(t, err)
	var got Fleet
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	resp.Body.Close()
	require.Equal(t, 2, got.Devices)
}

func TestHubBoundsSeries(t *testing.T) {
	h := NewHub(10, 2)
	r := sensor.Reading{DeviceID: "d", Site: "s", TS: time.Now(), Metrics: map[string]float64{"a": 1, "b": 2, "c": 3}}
	require.NoError(t, h.Write(context.Background(), sink.Batch{Readings: []sensor.Reading{r}}))
	d, _ := h.Device("d")
	require.Len(t, d.Series, 2, "no more series than the bound")
}
