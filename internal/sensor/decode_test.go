package sensor

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var received = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestDecodeValid(t *testing.T) {
	d := Decoder{MaxAge: 24 * time.Hour, MaxFuture: time.Hour}
	tests := []struct {
		name    string
		payload string
		want    Reading
	}{
		{
			name:    "full payload",
			payload: `{"device_id":"dev-00042","site":"plant-1","ts":"2026-11-22T10:00:00.123Z","seq":17,"metrics":{"temperature":21.5,"humidity":40.2}}`,
			want: Reading{DeviceID: "dev-00042", Site: "plant-1", TS: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC), Seq: 17,
				Metrics: map[string]float64{"temperature": 21.5, "humidity": 40.2}},
		},
		{
			name:    "ids from the topic, ts stamped at receipt",
			payload: `{"metrics":{"v":1}}`,
			want:    Reading{DeviceID: "dev-00042", Site: "plant-1", TS: received, Metrics: map[string]float64{"v": 1}},
		},
		{
			name:    "offset timestamp normalized to UTC, no fraction",
			payload: `{"ts":"2026-11-22T11:00:00+01:00","metrics":{"v":-1e-3}}`,
			want:    Reading{DeviceID: "dev-00042", Site: "plant-1", TS: received, Metrics: map[string]float64{"v": -0.001}},
		},
		{
			name:    "zero with a large exponent, and the smallest subnormal",
			payload: `{"metrics":{"v":0.000e-400,"w":5e-324}}`,
			want:    Reading{DeviceID: "dev-00042", Site: "plant-1", TS: received, Metrics: map[string]float64{"v": 0, "w": 5e-324}},
		},
		{
			name:    "whitespace around",
			payload: " \n{ \"metrics\" : { \"a_1\" : 3 } }\n",
			want:    Reading{DeviceID: "dev-00042", Site: "plant-1", TS: received, Metrics: map[string]float64{"a_1": 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Decode("plant-1", "dev-00042", []byte(tt.payload), received)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	d := Decoder{MaxAge: 24 * time.Hour, MaxFuture: time.Hour}
	many := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `"m` + strconv.Itoa(i) + `":1`
		}
		return `{"metrics":{` + strings.Join(parts, ",") + `}}`
	}
	tests := []struct {
		name    string
		payload string
		reason  string
	}{
		{"empty", ``, ReasonEmptyPayload},
		{"blank", "  \n", ReasonEmptyPayload},
		{"too large", `{"metrics":{"v":1},"x":"` + strings.Repeat("a", MaxPayloadBytes) + `"}`, ReasonPayloadTooLarge},
		{"invalid utf-8", "{\"metrics\":{\"v\":1},\"site\":\"\xff\"}", ReasonInvalidUTF8},
		{"truncated json", `{"metrics":{"v":1}`, ReasonInvalidJSON},
		{"garbage", `hello`, ReasonInvalidJSON},
		{"trailing data", `{"metrics":{"v":1}} {}`, ReasonInvalidJSON},
		{"array", `[1,2]`, ReasonNotAnObject},
		{"string", `"x"`, ReasonNotAnObject},
		{"null", `null`, ReasonNotAnObject},
		{"bare NaN", `{"metrics":{"v":NaN}}`, ReasonInvalidJSON},
		{"bare Infinity", `{"metrics":{"v":Infinity}}`, ReasonInvalidJSON},
		{"NaN string", `{"metrics":{"v":"NaN"}}`, ReasonWrongType},
		{"Infinity string", `{"metrics":{"v":"Infinity"}}`, ReasonWrongType},
		{"huge number", `{"metrics":{"v":1e999}}`, ReasonValueOutOfRange},
		{"number that underflows to zero", `{"metrics":{"v":-2.5e-400}}`, ReasonValueOutOfRange},
		{"huge negative", `{"metrics":{"v":-1e309}}`, ReasonValueOutOfRange},
		{"boolean metric", `{"metrics":{"v":true}}`, ReasonWrongType},
		{"null metric", `{"metrics":{"v":null}}`, ReasonWrongType},
		{"nested metric", `{"metrics":{"v":{"a":1}}}`, ReasonWrongType},
		{"deep nesting", `{"metrics":{"v":` + strings.Repeat("[", 100000) + `}}`, ReasonPayloadTooLarge},
		{"deep nesting under limit", `{"metrics":{"v":` + strings.Repeat("[", 10000) + `}}`, ReasonWrongType},
		{"metrics array", `{"metrics":[1,2]}`, ReasonWrongType},
		{"metrics missing", `{"seq":1}`, ReasonNoMetrics},
		{"metrics empty", `{"metrics":{}}`, ReasonNoMetrics},
		{"too many metrics", many(65), ReasonTooManyMetrics},
		{"thousands of metrics", many(3000), ReasonTooManyMetrics},
		{"duplicate field", `{"seq":1,"seq":2,"metrics":{"v":1}}`, ReasonDuplicateKey},
		{"duplicate metric", `{"metrics":{"v":1,"v":2}}`, ReasonDuplicateKey},
		{"unknown field", `{"metrics":{"v":1},"extra":1}`, ReasonUnknownField},
		{"metric name uppercase", `{"metrics":{"Temp":1}}`, ReasonInvalidMetricName},
		{"metric name digit first", `{"metrics":{"1v":1}}`, ReasonInvalidMetricName},
		{"metric name with space", `{"metrics":{"a b":1}}`, ReasonInvalidMetricName},
		{"metric name line protocol", `{"metrics":{"v,x=1":1}}`, ReasonInvalidMetricName},
		{"metric name too long", `{"metrics":{"` + strings.Repeat("a", 65) + `":1}}`, ReasonInvalidMetricName},
		{"metric name empty", `{"metrics":{"":1}}`, ReasonInvalidMetricName},
		{"device mismatch", `{"device_id":"dev-00043","metrics":{"v":1}}`, ReasonIDMismatch},
		{"site mismatch", `{"site":"plant-2","metrics":{"v":1}}`, ReasonIDMismatch},
		{"device id with quote", `{"device_id":"dev\"42","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id with comma", `{"device_id":"dev,42","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id with space", `{"device_id":"dev 42","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id with newline", `{"device_id":"dev\n42","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id with backslash", `{"device_id":"dev\\42","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id with equals", `{"device_id":"dev=42","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id cql injection", `{"device_id":"x'); DROP TABLE readings;--","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id flux injection", `{"device_id":"x\") |> drop()","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id empty", `{"device_id":"","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id too long", `{"device_id":"` + strings.Repeat("a", 65) + `","metrics":{"v":1}}`, ReasonInvalidID},
		{"device id number", `{"device_id":42,"metrics":{"v":1}}`, ReasonWrongType},
		{"ts number", `{"ts":1700000000,"metrics":{"v":1}}`, ReasonWrongType},
		{"ts not rfc3339", `{"ts":"2026-11-22 10:00:00","metrics":{"v":1}}`, ReasonInvalidTimestamp},
		{"ts far past", `{"ts":"1970-01-01T00:00:00Z","metrics":{"v":1}}`, ReasonTimestampRange},
		{"ts far future", `{"ts":"2999-01-01T00:00:00Z","metrics":{"v":1}}`, ReasonTimestampRange},
		{"ts year 0", `{"ts":"0000-01-01T00:00:00Z","metrics":{"v":1}}`, ReasonTimestampRange},
		{"negative seq", `{"seq":-1,"metrics":{"v":1}}`, ReasonNegativeSeq},
		{"fractional seq", `{"seq":1.5,"metrics":{"v":1}}`, ReasonInvalidSeq},
		{"seq overflow", `{"seq":99999999999999999999,"metrics":{"v":1}}`, ReasonInvalidSeq},
		{"seq string", `{"seq":"1","metrics":{"v":1}}`, ReasonWrongType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Decode("plant-1", "dev-00042", []byte(tt.payload), received)
			rej, ok := AsRejection(err)
			require.True(t, ok, "want a rejection, got %v", err)
			require.Equal(t, tt.reason, rej.Reason, rej.Detail)
			require.NotEmpty(t, rej.Detail)
			require.True(t, isPrintableASCII(rej.Detail), "detail must be escaped: %q", rej.Detail)
		})
	}
}

func TestParseTelemetry(t *testing.T) {
	tp := Topics{Prefix: "sensorflow"}
	tests := []struct {
		topic, site, device, reason string
	}{
		{"sensorflow/plant-1/dev-1/telemetry", "plant-1", "dev-1", ""},
		{"other/plant-1/dev-1/telemetry", "", "", ReasonInvalidTopic},
		{"sensorflow/plant-1/dev-1/alerts", "", "", ReasonInvalidTopic},
		{"sensorflow/plant-1/dev-1/x/telemetry", "", "", ReasonInvalidTopic},
		{"sensorflow/plant 1/dev-1/telemetry", "", "", ReasonInvalidID},
		{"sensorflow/plant-1//telemetry", "", "", ReasonInvalidID},
		{"sensorflow/plant-1/dév/telemetry", "", "", ReasonInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			site, dev, err := tp.ParseTelemetry(tt.topic)
			if tt.reason == "" {
				require.NoError(t, err)
				require.Equal(t, tt.site, site)
				require.Equal(t, tt.device, dev)
				return
			}
			rej, ok := AsRejection(err)
			require.True(t, ok)
			require.Equal(t, tt.reason, rej.Reason)
		})
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	r := Reading{DeviceID: "d-1", Site: "s.1", TS: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Seq: 9,
		Metrics: map[string]float64{"b": 1.25, "a": -3e-9, "c": 1e300}}
	b := r.AppendJSON(nil)
	require.Equal(t, `{"device_id":"d-1","site":"s.1","ts":"2026-01-02T03:04:05.000000006Z","seq":9,"metrics":{"a":-3e-09,"b":1.25,"c":1e+300}}`, string(b))
	var back Reading
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r, back)
}

func TestAlertIDDeterministic(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.Equal(t, AlertID("d", "m", ts), AlertID("d", "m", ts.In(time.FixedZone("x", 3600))))
	require.NotEqual(t, AlertID("d", "m", ts), AlertID("d", "m", ts.Add(time.Nanosecond)))
	require.NotEqual(t, AlertID("d", "m1", ts), AlertID("d", "m", ts))
	require.Len(t, AlertID("d", "m", ts), 24)
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func BenchmarkDecode(b *testing.B) {
	d := Decoder{MaxAge: 24 * time.Hour, MaxFuture: time.Hour}
	payload := []byte(`{"ts":"2026-11-22T10:00:00.123Z","seq":17,"metrics":{"temperature":21.5,"humidity":40.2}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode("plant-1", "dev-00042", payload, received); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseReading(t *testing.T) {
	r := Reading{DeviceID: "dev-1", Site: "plant-1", TS: time.Date(2026, 11, 22, 10, 0, 0, 5, time.UTC), Seq: 3,
		Metrics: map[string]float64{"temperature": 21.5, "humidity": -0.25}}
	got, err := ParseReading(r.AppendJSON(nil))
	require.NoError(t, err)
	require.Equal(t, r, got)

	for _, tt := range []struct{ payload, reason string }{
		{`{"site":"plant-1","ts":"2026-11-22T10:00:00Z","seq":1,"metrics":{"v":1}}`, ReasonInvalidID},
		{`{"device_id":"dev-1","ts":"2026-11-22T10:00:00Z","seq":1,"metrics":{"v":1}}`, ReasonInvalidID},
		{`{"device_id":"dev-1","site":"plant-1","seq":1,"metrics":{"v":1}}`, ReasonInvalidTimestamp},
		{`{"device_id":"dev 1","site":"plant-1","ts":"2026-11-22T10:00:00Z","metrics":{"v":1}}`, ReasonInvalidID},
		{`{"device_id":"dev-1","site":"plant-1","ts":"2026-11-22T10:00:00Z","metrics":{"v":1},"extra":1}`, ReasonUnknownField},
		{`{"device_id":"dev-1","site":"plant-1","ts":"2026-11-22T10:00:00Z","metrics":{}}`, ReasonNoMetrics},
	} {
		_, err := ParseReading([]byte(tt.payload))
		rej, ok := AsRejection(err)
		require.True(t, ok, "%s: %v", tt.payload, err)
		require.Equal(t, tt.reason, rej.Reason, tt.payload)
	}
}

// Without age bounds a timestamp must still fit the stores' nanosecond range.
func TestTimestampBeyondTheStoresRange(t *testing.T) {
	for _, ts := range []string{"2999-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "9999-12-31T23:59:59Z"} {
		_, err := Decoder{}.Decode("s", "d", []byte(`{"ts":"`+ts+`","metrics":{"v":1}}`), time.Time{})
		rej, ok := AsRejection(err)
		if !ok || rej.Reason != ReasonTimestampRange {
			t.Errorf("ts %s: %v", ts, err)
		}
		_, err = ParseReading([]byte(`{"device_id":"d","site":"s","ts":"` + ts + `","seq":1,"metrics":{"v":1}}`))
		if rej, ok := AsRejection(err); !ok || rej.Reason != ReasonTimestampRange {
			t.Errorf("normalized reading at %s: %v", ts, err)
		}
	}
	if _, err := (Decoder{}).Decode("s", "d", []byte(`{"ts":"2200-01-01T00:00:00Z","metrics":{"v":1}}`), time.Time{}); err != nil {
		t.Errorf("2200 is within range: %v", err)
	}
}
