package sensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Decoder turns untrusted MQTT payloads into validated Readings. Its zero
// value accepts any timestamp; set MaxAge and MaxFuture to bound them. A
// Decoder holds no state between calls and is safe for concurrent use.
type Decoder struct {
	// MaxAge rejects readings whose ts is older than this before receipt
	// (0: no bound).
	MaxAge time.Duration
	// MaxFuture rejects readings whose ts is this far after receipt
	// (0: no bound).
	MaxFuture time.Duration
}

// Decode parses payload, published on a topic naming site and device, into a
// Reading. received is the time of receipt: it stamps readings without ts and
// bounds the others. Every failure is a *Rejection.
//
// The payload is a JSON object with the fields device_id, site, ts, seq and
// metrics. device_id and site may be left out (then the topic's are used) but
// must match the topic when present; metrics is an object of 1 to 64 finite
// numbers. Unknown fields, duplicate keys and trailing data are rejected.
func (d Decoder) Decode(site, device string, payload []byte, received time.Time) (Reading, error) {
	r := Reading{Site: site, DeviceID: device}
	switch {
	case len(payload) > MaxPayloadBytes:
		return r, reject(ReasonPayloadTooLarge, "payload is %d bytes, at most %d", len(payload), MaxPayloadBytes)
	case len(bytes.TrimSpace(payload)) == 0:
		return r, reject(ReasonEmptyPayload, "payload is empty")
	case !utf8.Valid(payload):
		return r, reject(ReasonInvalidUTF8, "payload is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := expectDelim(dec, '{', "payload"); err != nil {
		return r, err
	}
	var seen [5]bool // device_id, site, ts, seq, metrics
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return r, err
		}
		idx := fieldIndex(key)
		if idx < 0 {
			return r, reject(ReasonUnknownField, "unknown field %+q", safe(key))
		}
		if seen[idx] {
			return r, reject(ReasonDuplicateKey, "field %q appears twice", key)
		}
		seen[idx] = true
		switch key {
		case "device_id", "site":
			s, err := stringValue(dec, key)
			if err != nil {
				return r, err
			}
			want := device
			if key == "site" {
				want = site
			}
			if s != want {
				if verr := ValidateID(key, s); verr != nil {
					return r, verr
				}
				return r, reject(ReasonIDMismatch, "%s %q in the payload contradicts %q in the topic", key, s, want)
			}
		case "ts":
			s, err := stringValue(dec, key)
			if err != nil {
				return r, err
			}
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return r, reject(ReasonInvalidTimestamp, "ts %+q is not RFC 3339", safe(s))
			}
			r.TS = ts.UTC()
		case "seq":
			n, err := numberValue(dec, key)
			if err != nil {
				return r, err
			}
			seq, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return r, reject(ReasonInvalidSeq, "seq %+q is not a 64-bit integer", safe(string(n)))
			}
			if seq < 0 {
				return r, reject(ReasonNegativeSeq, "seq is %d", seq)
			}
			r.Seq = seq
		case "metrics":
			m, err := metricsValue(dec)
			if err != nil {
				return r, err
			}
			r.Metrics = m
		}
	}
	if err := expectDelim(dec, '}', "payload"); err != nil {
		return r, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, reject(ReasonInvalidJSON, "trailing data after the JSON object")
	}
	if !seen[4] {
		return r, reject(ReasonNoMetrics, "metrics is missing")
	}
	if r.TS.IsZero() {
		r.TS = received.UTC()
	} else if err := d.checkTime(r.TS, received); err != nil {
		return r, err
	}
	return r, r.Validate()
}

func (d Decoder) checkTime(ts, received time.Time) error {
	if d.MaxAge > 0 && ts.Before(received.Add(-d.MaxAge)) {
		return reject(ReasonTimestampRange, "ts %s is more than %s before receipt", ts.Format(time.RFC3339), d.MaxAge)
	}
	if d.MaxFuture > 0 && ts.After(received.Add(d.MaxFuture)) {
		return reject(ReasonTimestampRange, "ts %s is more than %s after receipt", ts.Format(time.RFC3339), d.MaxFuture)
	}
	return nil
}

func fieldIndex(key string) int {
	switch key {
	case "device_id":
		return 0
	case "site":
		return 1
	case "ts":
		return 2
	case "seq":
		return 3
	case "metrics":
		return 4
	}
	return -1
}

func metricsValue(dec *json.Decoder) (map[string]float64, error) {
	if err := expectDelim(dec, '{', "metrics"); err != nil {
		return nil, err
	}
	m := make(map[string]float64, 4)
	for dec.More() {
		name, err := objectKey(dec)
		if err != nil {
			return nil, err
		}
		if len(m) == MaxMetrics {
			return nil, reject(ReasonTooManyMetrics, "more than %d metrics", MaxMetrics)
		}
		if err := ValidateMetricName(name); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, reject(ReasonDuplicateKey, "metric %q appears twice", name)
		}
		n, err := numberValue(dec, "metric "+strconv.Quote(name))
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(v, 0) {
			return nil, reject(ReasonValueOutOfRange, "metric %q value %+q is outside the float64 range", name, safe(string(n)))
		}
		m[name] = v
	}
	if err := expectDelim(dec, '}', "metrics"); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, reject(ReasonNoMetrics, "metrics is empty")
	}
	return m, nil
}

// token reads one JSON token, mapping syntax errors to ReasonInvalidJSON.
func token(dec *json.Decoder) (json.Token, error) {
	t, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, reject(ReasonInvalidJSON, "unexpected end of JSON")
		}
		// The parser's message may quote the offending byte: escape it.
		q := strconv.QuoteToASCII(err.Error())
		return nil, reject(ReasonInvalidJSON, "%s", q[1:len(q)-1])
	}
	return t, nil
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	t, err := token(dec)
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		if want == '{' {
			if what == "payload" {
				return reject(ReasonNotAnObject, "payload is %s, not a JSON object", describe(t))
			}
			return reject(ReasonWrongType, "%s is %s, want an object", what, describe(t))
		}
		return reject(ReasonInvalidJSON, "%s: unexpected %s", what, describe(t))
	}
	return nil
}

func objectKey(dec *json.Decoder) (string, error) {
	t, err := token(dec)
	if err != nil {
		return "", err
	}
	k, ok := t.(string)
	if !ok {
		return "", reject(ReasonInvalidJSON, "object key is %s", describe(t))
	}
	return k, nil
}

// value reads a scalar value; an object or array is rejected at once, before
// any of its content is read, so deep nesting costs nothing.
func value(dec *json.Decoder, field string) (json.Token, error) {
	t, err := token(dec)
	if err != nil {
		return nil, err
	}
	if _, ok := t.(json.Delim); ok {
		return nil, reject(ReasonWrongType, "%s is %s", field, describe(t))
	}
	return t, nil
}

func stringValue(dec *json.Decoder, field string) (string, error) {
	t, err := value(dec, field)
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", reject(ReasonWrongType, "%s is %s, want a string", field, describe(t))
	}
	return s, nil
}

func numberValue(dec *json.Decoder, field string) (json.Number, error) {
	t, err := value(dec, field)
	if err != nil {
		return "", err
	}
	n, ok := t.(json.Number)
	if !ok {
		return "", reject(ReasonWrongType, "%s is %s, want a number", field, describe(t))
	}
	return n, nil
}

func describe(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return strconv.Quote(v.String())
	case string:
		return "the string " + strconv.QuoteToASCII(safe(v))
	case json.Number:
		return "the number " + safe(string(v))
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a value"
}
