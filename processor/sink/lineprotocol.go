package sink

import (
	"strconv"
	"strings"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// InfluxDB line protocol encoding. Ids and metric names are validated at the
// bridge, but the encoder escapes every tag and string anyway so that nothing
// can ever inject a field, tag or line.

var (
	tagEscaper    = strings.NewReplacer(`\`, `\\`, ",", `\,`, "=", `\=`, " ", `\ `, "\n", `\n`, "\r", `\r`)
	stringEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
)

func appendTag(b []byte, key, value string) []byte {
	b = append(b, ',')
	b = append(b, key...)
	b = append(b, '=')
	return append(b, tagEscaper.Replace(value)...)
}

func appendFloatField(b []byte, first bool, key string, v float64) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, tagEscaper.Replace(key)...)
	b = append(b, '=')
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func appendStringField(b []byte, first bool, key, v string) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, key...)
	b = append(b, `="`...)
	b = append(b, stringEscaper.Replace(strings.Map(noControl, v))...)
	return append(b, '"')
}

// appendReadingLine encodes a reading as one line of measurement "readings":
// tags site and device_id, one float field per metric, the reading's time.
// names are the reading's metric names, sorted (Reading.MetricNames).
func appendReadingLine(b []byte, r *sensor.Reading, names []string) []byte {
	b = append(b, "readings"...)
	b = appendTag(b, "device_id", r.DeviceID)
	b = appendTag(b, "site", r.Site)
	b = append(b, ' ')
	for i, name := range names {
		b = appendFloatField(b, i == 0, name, r.Metrics[name])
	}
	b = append(b, ' ')
	return strconv.AppendInt(b, r.TS.UnixNano(), 10)
}

// appendAlertLine encodes an alert event as one line of measurement "alerts".
func appendAlertLine(b []byte, a *sensor.Alert) []byte {
	b = append(b, "alerts"...)
	b = appendTag(b, "device_id", a.DeviceID)
	b = appendTag(b, "kind", a.Kind)
	b = appendTag(b, "metric", a.Metric)
	b = appendTag(b, "severity", a.Severity)
	b = appendTag(b, "site", a.Site)
	b = append(b, ' ')
	b = appendStringField(b, true, "alert_id", a.AlertID)
	b = appendStringField(b, false, "state", a.State)
	open := 0.0
	if a.State == sensor.StateOpen {
		open = 1
	}
	b = appendFloatField(b, false, "open", open)
	b = appendFloatField(b, false, "score", a.Score)
	b = appendFloatField(b, false, "value", a.Value)
	b = appendFloatField(b, false, "expected_low", a.ExpectedLow)
	b = appendFloatField(b, false, "expected_high", a.ExpectedHigh)
	b = appendStringField(b, false, "message", a.Message)
	if a.IncidentID != "" {
		b = appendStringField(b, false, "incident_id", a.IncidentID)
	}
	if a.MemberCount > 0 {
		b = appendFloatField(b, false, "member_count", float64(a.MemberCount))
		b = appendStringField(b, false, "members", strings.Join(a.Members, ","))
	}
	if a.Suppressed > 0 {
		b = appendFloatField(b, false, "suppressed", float64(a.Suppressed))
	}
	b = append(b, ' ')
	return strconv.AppendInt(b, a.TS.UnixNano(), 10)
}

// appendScoreLine encodes the anomaly scores of a reading's metrics (in
// metric-name order) as one line of measurement "scores", tagged like the
// reading.
func appendScoreLine(b []byte, r *sensor.Reading, names []string, scores []float64) []byte {
	b = append(b, "scores"...)
	b = appendTag(b, "device_id", r.DeviceID)
	b = appendTag(b, "site", r.Site)
	b = append(b, ' ')
	for i, name := range names {
		b = appendFloatField(b, i == 0, name, scores[i])
	}
	b = append(b, ' ')
	return strconv.AppendInt(b, r.TS.UnixNano(), 10)
}

// noControl folds control characters to spaces: line protocol strings cannot
// escape them.
func noControl(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return ' '
	}
	return r
}
