package sink

import (
	"math"
	"strings"
	"testing"
	"time"

	protocol "github.com/influxdata/line-protocol"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// FuzzAlertLine: whatever the strings of an alert hold, its line-protocol
// encoding is one line that InfluxData's own parser reads back to exactly
// the same tags and fields: nothing can inject a tag, a field or a line.
func FuzzAlertLine(f *testing.F) {
	f.Add("dev-1", "site-1", "temperature", "zscore", "warning", "a message", "alert-1", 0.5)
	f.Add(`d,x=1 y`, `s\`, "m\n", "k=\"", "w ", "o,", "say \"hi\"\nnext=line\\", math.Inf(1))
	parser := protocol.NewParser(protocol.NewMetricHandler())
	f.Fuzz(func(t *testing.T, device, site, metric, kind, severity, message, extra string, score float64) {
		if math.IsNaN(score) || math.IsInf(score, 0) {
			return // scores are finite by construction
		}
		for _, s := range []string{device, site, metric, kind, severity} {
			// Tag values cannot be empty or carry a backslash or control character
			// in line protocol;
			// ids and names never do (they are validated at the bridge).
			if s == "" || strings.ContainsRune(s, '\\') || !validUTF8(s) || !printable(s) {
				return
			}
		}
		if !validUTF8(message) || !validUTF8(extra) {
			return
		}
		a := sensor.Alert{AlertID: extra, DeviceID: device, Site: site, Metric: metric, Kind: kind, Severity: severity,
			State: "open", Score: score, Message: message, TS: time.Unix(0, 1700000000000000000)}
		line := appendAlertLine(nil, &a)
		ms, err := parser.Parse(append(line, '\n'))
		if err != nil {
			t.Fatalf("line %q does not parse: %v", line, err)
		}
		if len(ms) != 1 {
			t.Fatalf("line %q parsed as %d points", line, len(ms))
		}
		m := ms[0]
		tags := map[string]string{}
		for _, tg := range m.TagList() {
			tags[tg.Key] = tg.Value
		}
		want := map[string]string{"device_id": device, "site": site, "metric": metric, "kind": kind, "severity": severity}
		if len(tags) != len(want) {
			t.Fatalf("tags %v, want %v", tags, want)
		}
		for k, v := range want {
			if tags[k] != v {
				t.Fatalf("tag %s = %q, want %q (line %q)", k, tags[k], v, line)
			}
		}
		fields := map[string]any{}
		for _, fl := range m.FieldList() {
			fields[fl.Key] = fl.Value
		}
		if fields["message"] != strings.Map(noControl, message) || fields["alert_id"] != strings.Map(noControl, extra) || fields["score"] != score || len(fields) != 8 {
			t.Fatalf("fields %v from line %q", fields, line)
		}
		if !m.Time().Equal(a.TS) {
			t.Fatalf("time %v", m.Time())
		}
	})
}

func validUTF8(s string) bool {
	for _, r := range s {
		if r == 0xFFFD {
			return false
		}
	}
	return true
}

// printable reports whether s has no control characters, as every validated
// id and every constant tag value has.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// FuzzReadingLine: every payload the bridge accepts becomes one line that
// InfluxData's parser reads back to the reading's own tags, fields and time.
func FuzzReadingLine(f *testing.F) {
	f.Add([]byte(`{"ts":"2026-11-22T10:00:00.123Z","seq":1,"metrics":{"temperature":21.5,"humidity":-1e-300}}`))
	f.Add([]byte(`{"metrics":{"v":1e308,"w":5e-324,"x":0}}`))
	f.Add([]byte(`{"ts":"2999-01-01T00:00:00Z","metrics":{"v":1}}`))
	parser := protocol.NewParser(protocol.NewMetricHandler())
	received := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := sensor.Decoder{}.Decode("site-1", "dev-1", payload, received)
		if err != nil {
			return
		}
		line := appendReadingLine(nil, &r, r.MetricNames())
		ms, err := parser.Parse(append(line, '\n'))
		if err != nil || len(ms) != 1 {
			t.Fatalf("line %q: %d points, %v", line, len(ms), err)
		}
		m := ms[0]
		if m.Name() != "readings" || !m.Time().Equal(r.TS) {
			t.Fatalf("line %q: measurement %q time %v, want readings %v", line, m.Name(), m.Time(), r.TS)
		}
		tags := map[string]string{}
		for _, tg := range m.TagList() {
			tags[tg.Key] = tg.Value
		}
		if tags["device_id"] != r.DeviceID || tags["site"] != r.Site {
			t.Fatalf("line %q: tags %v", line, tags)
		}
		fields := map[string]any{}
		for _, fl := range m.FieldList() {
			fields[fl.Key] = fl.Value
		}
		for name, v := range r.Metrics {
			if got, ok := fields[name].(float64); !ok || got != v {
				t.Fatalf("line %q: field %s = %v, want %v", line, name, fields[name], v)
			}
		}
	})
}
