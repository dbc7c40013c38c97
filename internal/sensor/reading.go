// Package sensor defines Sensorflow's wire schema: the Reading a device
// publishes, the Alert the processor raises, the MQTT topics they travel on,
// and the validation every external payload goes through. It imports no
// service client, so every component and tool can share it.
package sensor

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Limits of the reading contract. They are part of the documented schema.
const (
	// MaxPayloadBytes is the largest MQTT payload the bridge accepts.
	MaxPayloadBytes = 64 << 10
	// MaxIDLen is the longest device id or site.
	MaxIDLen = 64
	// MaxMetrics is the most metrics one reading may carry.
	MaxMetrics = 64
	// MaxMetricNameLen is the longest metric name.
	MaxMetricNameLen = 64
)

// Reading is one device's measurement at one instant, normalized: site and
// device id are always set, TS is UTC, and Metrics holds finite values only.
// A Reading is a value; callers must not share its Metrics map across
// goroutines while writing to it.
type Reading struct {
	DeviceID string             `json:"device_id"`
	Site     string             `json:"site"`
	TS       time.Time          `json:"ts"`
	Seq      int64              `json:"seq"`
	Metrics  map[string]float64 `json:"metrics"`
}

// MetricNames returns the reading's metric names in sorted order.
func (r *Reading) MetricNames() []string {
	return r.AppendMetricNames(make([]string, 0, len(r.Metrics)))
}

// AppendMetricNames appends the reading's metric names, sorted, to dst: with
// a dst of enough capacity on the caller's stack, it does not allocate.
func (r *Reading) AppendMetricNames(dst []string) []string {
	n := len(dst)
	for k := range r.Metrics {
		dst = append(dst, k)
	}
	slices.Sort(dst[n:])
	return dst
}

// AppendJSON appends the reading's canonical JSON encoding to b: fields in a
// fixed order, metrics sorted by name, ts in RFC 3339 with nanoseconds, UTC.
// It relies on the reading having passed Validate (ids and names need no
// escaping).
func (r *Reading) AppendJSON(b []byte) []byte {
	b = append(b, `{"device_id":"`...)
	b = append(b, r.DeviceID...)
	b = append(b, `","site":"`...)
	b = append(b, r.Site...)
	b = append(b, `","ts":"`...)
	b = r.TS.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"metrics":{`...)
	var names [8]string // on the stack for readings of up to 8 metrics
	for i, name := range r.AppendMetricNames(names[:0]) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendFloat(b, r.Metrics[name], 'g', -1, 64)
	}
	return append(b, "}}"...)
}

// The range of timestamps InfluxDB (nanoseconds since 1970 in an int64) can
// store, a day inside each end.
var (
	minTS = time.Unix(0, math.MinInt64).UTC().AddDate(0, 0, 1).Truncate(24 * time.Hour)
	maxTS = time.Unix(0, math.MaxInt64).UTC().AddDate(0, 0, -1).Truncate(24 * time.Hour)
)

// Validate checks a reading against the contract and returns a *Rejection
// naming the first rule it breaks, or nil.
func (r *Reading) Validate() error {
	if err := ValidateID("device_id", r.DeviceID); err != nil {
		return err
	}
	if r.DeviceID == SiteDevice {
		return reject(ReasonInvalidID, "device_id %q is reserved for the alerts of a whole site", SiteDevice)
	}
	if err := ValidateID("site", r.Site); err != nil {
		return err
	}
	if r.TS.IsZero() {
		return reject(ReasonInvalidTimestamp, "ts is missing")
	}
	if r.TS.Before(minTS) || !r.TS.Before(maxTS) {
		return reject(ReasonTimestampRange, "ts %s is outside the range a store can hold (nanoseconds since 1970 in 64 bits: %s to %s)",
			r.TS.Format(time.RFC3339), minTS.Format(time.DateOnly), maxTS.Format(time.DateOnly))
	}
	if r.Seq < 0 {
		return reject(ReasonNegativeSeq, "seq is %d", r.Seq)
	}
	if len(r.Metrics) == 0 {
		return reject(ReasonNoMetrics, "metrics is empty")
	}
	if len(r.Metrics) > MaxMetrics {
		return reject(ReasonTooManyMetrics, "%d metrics, at most %d", len(r.Metrics), MaxMetrics)
	}
	for name, v := range r.Metrics {
		if err := ValidateMetricName(name); err != nil {
			return err
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return reject(ReasonNonFiniteValue, "metric %+q is not a finite number", name)
		}
	}
	return nil
}

// SiteDevice is the device id of the alerts about a whole site (incidents);
// no device may use it.
const SiteDevice = "_site"

// ValidateID checks a device id or site: 1 to 64 characters of [A-Za-z0-9._-].
// field names the field in the returned *Rejection.
func ValidateID(field, id string) error {
	if id == "" {
		return reject(ReasonInvalidID, "%s is empty", field)
	}
	if len(id) > MaxIDLen {
		return reject(ReasonInvalidID, "%s is %d bytes, at most %d", field, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return reject(ReasonInvalidID, "%s has a forbidden character at byte %d (allowed: A-Z a-z 0-9 . _ -)", field, i)
		}
	}
	return nil
}

// ValidateMetricName checks a metric name: [a-z][a-z0-9_]{0,63}.
func ValidateMetricName(name string) error {
	if name == "" || len(name) > MaxMetricNameLen {
		return reject(ReasonInvalidMetricName, "metric name must be 1 to %d characters", MaxMetricNameLen)
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return reject(ReasonInvalidMetricName, "metric name %+q must start with a-z", safe(name))
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return reject(ReasonInvalidMetricName, "metric name %+q has a forbidden character (allowed: a-z 0-9 _)", safe(name))
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// safe shortens untrusted text for a rejection detail; callers quote it
// with %+q so that control characters and non-ASCII bytes are escaped.
func safe(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
