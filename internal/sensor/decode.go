package sensor

import (
	"bytes"
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
	return d.decode(site, device, true, payload, received)
}

// ParseReading reads a normalized reading, as the bridge writes it to the
// readings topic: the same strict rules as Decode, except that device_id,
// site and ts come from the payload and must all be there.
func ParseReading(payload []byte) (Reading, error) {
	return Decoder{}.decode("", "", false, payload, time.Time{})
}

func (d Decoder) decode(site, device string, fromTopic bool, payload []byte, received time.Time) (Reading, error) {
	r := Reading{Site: site, DeviceID: device}
	switch {
	case len(payload) > MaxPayloadBytes:
		return r, reject(ReasonPayloadTooLarge, "payload is %d bytes, at most %d", len(payload), MaxPayloadBytes)
	case len(bytes.TrimSpace(payload)) == 0:
		return r, reject(ReasonEmptyPayload, "payload is empty")
	case !utf8.Valid(payload):
		return r, reject(ReasonInvalidUTF8, "payload is not valid UTF-8")
	}
	l := lexer{b: payload}
	if err := l.open("payload"); err != nil {
		return r, err
	}
	var seen [5]bool // device_id, site, ts, seq, metrics
	more, err := l.first()
	for ; more && err == nil; more, err = l.next() {
		key, err := l.key()
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
			s, err := l.stringValue(key)
			if err != nil {
				return r, err
			}
			if !fromTopic {
				if key == "site" {
					r.Site = s
				} else {
					r.DeviceID = s
				}
				continue
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
			s, err := l.stringValue(key)
			if err != nil {
				return r, err
			}
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return r, reject(ReasonInvalidTimestamp, "ts %+q is not RFC 3339", safe(s))
			}
			r.TS = ts.UTC()
		case "seq":
			n, err := l.numberValue(key)
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
			m, err := l.metricsValue()
			if err != nil {
				return r, err
			}
			r.Metrics = m
		}
	}
	if err != nil {
		return r, err
	}
	if l.ws(); l.i < len(l.b) {
		return r, reject(ReasonInvalidJSON, "trailing data after the JSON object")
	}
	if !seen[4] {
		return r, reject(ReasonNoMetrics, "metrics is missing")
	}
	if r.TS.IsZero() {
		if received.IsZero() {
			return r, reject(ReasonInvalidTimestamp, "ts is missing")
		}
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
