package sensor

import (
	"errors"
	"fmt"
)

// Reasons a payload is rejected. They are stable identifiers: the bridge puts
// them in the dead-letter header "reason" and in the `reason` label of its
// rejection counter.
const (
	ReasonPayloadTooLarge   = "payload_too_large"
	ReasonEmptyPayload      = "empty_payload"
	ReasonInvalidUTF8       = "invalid_utf8"
	ReasonInvalidJSON       = "invalid_json"
	ReasonNotAnObject       = "not_an_object"
	ReasonDuplicateKey      = "duplicate_key"
	ReasonUnknownField      = "unknown_field"
	ReasonWrongType         = "wrong_type"
	ReasonInvalidTopic      = "invalid_topic"
	ReasonInvalidID         = "invalid_id"
	ReasonIDMismatch        = "id_mismatch"
	ReasonInvalidTimestamp  = "invalid_timestamp"
	ReasonTimestampRange    = "timestamp_out_of_range"
	ReasonNegativeSeq       = "negative_seq"
	ReasonInvalidSeq        = "invalid_seq"
	ReasonNoMetrics         = "no_metrics"
	ReasonTooManyMetrics    = "too_many_metrics"
	ReasonInvalidMetricName = "invalid_metric_name"
	ReasonNonFiniteValue    = "non_finite_value"
	ReasonValueOutOfRange   = "value_out_of_range"
)

// Reasons lists every rejection reason, for pre-registering metrics.
var Reasons = []string{
	ReasonPayloadTooLarge, ReasonEmptyPayload, ReasonInvalidUTF8, ReasonInvalidJSON, ReasonNotAnObject,
	ReasonDuplicateKey, ReasonUnknownField, ReasonWrongType, ReasonInvalidTopic, ReasonInvalidID,
	ReasonIDMismatch, ReasonInvalidTimestamp, ReasonTimestampRange, ReasonNegativeSeq, ReasonInvalidSeq,
	ReasonNoMetrics, ReasonTooManyMetrics, ReasonInvalidMetricName, ReasonNonFiniteValue, ReasonValueOutOfRange,
}

// Rejection explains why a payload breaks the reading contract. Reason is one
// of the Reason constants; Detail is a human-readable sentence that quotes at
// most a short, escaped excerpt of the offending input.
type Rejection struct {
	Reason string
	Detail string
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Detail }

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// RejectionOf returns the *Rejection inside err or, for any other error, a
// rejection for invalid JSON carrying err's text: every decoding failure
// becomes a reason the dead-letter topic can carry.
func RejectionOf(err error) *Rejection {
	if r, ok := AsRejection(err); ok {
		return r
	}
	return &Rejection{Reason: ReasonInvalidJSON, Detail: err.Error()}
}

// AsRejection returns the *Rejection inside err, if any.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}
