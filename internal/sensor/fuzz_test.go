package sensor

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecode: no payload crashes the decoder, every failure is a
// *Rejection with a printable detail, every accepted payload is JSON that
// encoding/json reads the same, and every accepted reading is valid and
// survives its canonical encoding unchanged.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"device_id":"dev-00042","site":"plant-1","ts":"2026-11-22T10:00:00.123Z","seq":17,"metrics":{"temperature":21.5,"humidity":40.2}}`,
		`{"metrics":{"v":1}}`, `{"metrics":{"v":1e-400}}`, `{"metrics":{"v":1e999}}`, `{"metrics":{"v":"NaN"}}`,
		`[` + `[[[[[[[[[[`, `{"seq":1,"seq":2,"metrics":{"v":1}}`, "{\"metrics\":{\"v\":1},\"site\":\"\xff\"}",
		`{"device_id":"x'); DROP TABLE readings;--","metrics":{"v":1}}`, `{"metrics":{"a,b=c d":1}}`, ``, `null`,
		`{"metrics":{"v":1,}}`, `{"metrics":{"v":01}}`, `{"metrics":{"v":-}}`, `{"site":"\u00e9\ud83d\ude00","metrics":{"v":1}}`,
		`{"metrics":{"v":1}} x`, `{"metrics":{"v":.5}}`, `{"metrics":{"v":1.}}`, `{"metrics":{"v":1e}}`, "{\"metrics\":{\"v\":1}}\x00",
	} {
		f.Add("plant-1", "dev-00042", []byte(seed))
	}
	d := Decoder{MaxAge: 24 * time.Hour, MaxFuture: time.Hour}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, site, device string, payload []byte) {
		if ValidateID("site", site) != nil || ValidateID("device_id", device) != nil {
			return // the topic parser rejects these first
		}
		r, err := d.Decode(site, device, payload, now)
		if err != nil {
			rej, ok := AsRejection(err)
			if !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			if rej.Reason == "" || !utf8.ValidString(rej.Detail) {
				t.Fatalf("bad rejection %#v", rej)
			}
			for i := 0; i < len(rej.Detail); i++ {
				if rej.Detail[i] < 0x20 || rej.Detail[i] > 0x7e {
					t.Fatalf("unescaped byte in detail %q", rej.Detail)
				}
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid reading: %v", err)
		}
		// The hand-written scanner agrees with encoding/json on what is
		// JSON and on every value it accepted.
		if !json.Valid(payload) {
			t.Fatalf("accepted a payload encoding/json rejects: %q", payload)
		}
		var ref struct {
			Metrics map[string]float64 `json:"metrics"`
		}
		if err := json.Unmarshal(payload, &ref); err != nil {
			t.Fatalf("encoding/json cannot read an accepted payload: %v", err)
		}
		for k, v := range r.Metrics {
			if ref.Metrics[k] != v {
				t.Fatalf("metric %q: decoded %v, encoding/json %v", k, v, ref.Metrics[k])
			}
		}
		if r.DeviceID != device || r.Site != site {
			t.Fatalf("ids %s/%s, topic %s/%s", r.Site, r.DeviceID, site, device)
		}
		var back Reading
		if err := json.Unmarshal(r.AppendJSON(nil), &back); err != nil {
			t.Fatalf("canonical encoding is not JSON: %v", err)
		}
		if !back.TS.Equal(r.TS) || back.Seq != r.Seq || len(back.Metrics) != len(r.Metrics) {
			t.Fatalf("round trip changed the reading: %+v → %+v", r, back)
		}
		for k, v := range r.Metrics {
			if back.Metrics[k] != v && !(math.IsNaN(v) && math.IsNaN(back.Metrics[k])) {
				t.Fatalf("metric %s: %v → %v", k, v, back.Metrics[k])
			}
		}
	})
}

// FuzzParseTelemetry: no topic crashes the parser, and an accepted topic is
// rebuilt exactly from its parts.
func FuzzParseTelemetry(f *testing.F) {
	for _, seed := range []string{"sensorflow/plant-1/dev-1/telemetry", "sensorflow/+/#/telemetry", "sensorflow//x/telemetry", "sensorflow/a/b/c/telemetry", "x"} {
		f.Add(seed)
	}
	tp := Topics{Prefix: "sensorflow"}
	f.Fuzz(func(t *testing.T, topic string) {
		site, device, err := tp.ParseTelemetry(topic)
		if err != nil {
			if _, ok := AsRejection(err); !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		if tp.Telemetry(site, device) != topic {
			t.Fatalf("%q parsed as %q/%q", topic, site, device)
		}
	})
}

// FuzzParseReading: the processor's reader of the readings topic never
// crashes, rejects with a *Rejection, and reads back exactly what the
// canonical encoding wrote.
func FuzzParseReading(f *testing.F) {
	f.Add([]byte(`{"device_id":"dev-1","site":"plant-1","ts":"2026-11-22T10:00:00Z","seq":1,"metrics":{"v":1}}`))
	f.Add([]byte(`{"device_id":"dev-1","site":"plant-1","metrics":{"v":1}}`))
	f.Add([]byte(`{"device_id":"","site":"plant-1","ts":"2026-11-22T10:00:00Z","metrics":{"v":1e308}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := ParseReading(payload)
		if err != nil {
			if _, ok := AsRejection(err); !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid reading: %v", err)
		}
		back, err := ParseReading(r.AppendJSON(nil))
		if err != nil {
			t.Fatalf("canonical encoding rejected: %v", err)
		}
		if back.DeviceID != r.DeviceID || back.Site != r.Site || !back.TS.Equal(r.TS) || back.Seq != r.Seq || len(back.Metrics) != len(r.Metrics) {
			t.Fatalf("round trip changed the reading: %+v → %+v", r, back)
		}
		for k, v := range r.Metrics {
			if back.Metrics[k] != v {
				t.Fatalf("metric %s: %v → %v", k, v, back.Metrics[k])
			}
		}
	})
}

// FuzzParseAlert: no event on the alerts topic crashes the reader of the
// bridge's mirror or of `sensorflow alerts`; an accepted one names an MQTT
// topic of exactly its own device (no wildcard, no extra level) and reads
// back the same after the processor's encoding.
func FuzzParseAlert(f *testing.F) {
	ok := `{"alert_id":"3f1c0a","device_id":"dev-1","site":"plant-1","metric":"temperature","kind":"zscore","severity":"warning",` +
		`"state":"open","score":0.83,"value":31.2,"expected_low":17.9,"expected_high":24.1,"ts":"2026-11-22T10:00:07Z",` +
		`"started_at":"2026-11-22T10:00:07Z","resolved_at":null,"message":"m"}`
	for _, seed := range []string{ok, `{"device_id":"+","site":"#"}`, `{"alert_id":"a b"}`, `{}`, `[]`, ok + ok} {
		f.Add([]byte(seed))
	}
	tp := Topics{Prefix: "sensorflow"}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAlert(b)
		if err != nil {
			return
		}
		topic := tp.Alerts(a.Site, a.DeviceID)
		if strings.ContainsAny(topic, "+#\x00") || strings.Count(topic, "/") != 3 {
			t.Fatalf("alert %q publishes to %q", b, topic)
		}
		enc, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("encoding an accepted alert: %v", err)
		}
		back, err := ParseAlert(enc)
		if err != nil {
			t.Fatalf("the encoding of an accepted alert is rejected: %v", err)
		}
		if back.AlertID != a.AlertID || back.DeviceID != a.DeviceID || back.Site != a.Site || back.Metric != a.Metric || back.State != a.State {
			t.Fatalf("round trip changed the alert: %+v → %+v", a, back)
		}
	})
}
