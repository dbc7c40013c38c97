package sensor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Alert severities and states.
const (
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
	StateOpen        = "open"
	StateResolved    = "resolved"
)

// Alert is one event in the life of an anomaly on one device's metric: it is
// published when the anomaly opens and again when it resolves, with the same
// AlertID. Times come from the readings, never from a wall clock.
type Alert struct {
	AlertID      string     `json:"alert_id"`
	DeviceID     string     `json:"device_id"`
	Site         string     `json:"site"`
	Metric       string     `json:"metric"`
	Kind         string     `json:"kind"`
	Severity     string     `json:"severity"`
	State        string     `json:"state"`
	Score        float64    `json:"score"`
	Value        float64    `json:"value"`
	ExpectedLow  float64    `json:"expected_low"`
	ExpectedHigh float64    `json:"expected_high"`
	TS           time.Time  `json:"ts"`
	StartedAt    time.Time  `json:"started_at"`
	ResolvedAt   *time.Time `json:"resolved_at"`
	Message      string     `json:"message"`
	// Incidents (device SiteDevice) list their member devices (at most a
	// few hundred ids; MemberCount is complete) and, once resolved, how many
	// device alerts they grouped. A device alert grouped into an incident
	// carries its id in IncidentID; such alerts are stored, not published.
	Members     []string `json:"members,omitempty"`
	MemberCount int      `json:"member_count,omitempty"`
	Suppressed  int      `json:"suppressed,omitempty"`
	IncidentID  string   `json:"incident_id,omitempty"`
	// A device alert (kind "device") names the metrics that contributed
	// most to it, strongest first: its explanation.
	Contributors []Contributor `json:"contributors,omitempty"`
}

// Contributor is one metric's part in a device alert: its share of the
// device's evidence in [0,1] and its deviation from its normal level in
// spreads (signed: below normal is negative).
type Contributor struct {
	Metric string  `json:"metric"`
	Share  float64 `json:"share"`
	Z      float64 `json:"z"`
}

// MaxContributors bounds the contributors an alert may list.
const MaxContributors = 16

// MaxMembers bounds the member ids an alert may list.
const MaxMembers = 1000

// AlertID derives the id of the anomaly that started at startedAt on a
// device's metric. The same anomaly processed twice yields the same id.
func AlertID(device, metric string, startedAt time.Time) string {
	h := sha256.New()
	h.Write([]byte(device))
	h.Write([]byte{0})
	h.Write([]byte(metric))
	h.Write([]byte{0})
	h.Write(startedAt.UTC().AppendFormat(nil, time.RFC3339Nano))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// ParseAlert reads an alert event from the alerts topic, which a foreign
// producer may write to as well: it must be one JSON object with known
// fields, valid site, device id and metric name, a non-empty alert id of
// printable ASCII, and a known state. Kind, severity and message are free
// text for display; the caller must not trust them further.
func ParseAlert(b []byte) (Alert, error) {
	var a Alert
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return Alert{}, fmt.Errorf("alert is not valid JSON: %w", err)
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return Alert{}, errors.New("alert has data after its JSON object")
	}
	if err := ValidateID("site", a.Site); err != nil {
		return Alert{}, err
	}
	if err := ValidateID("device_id", a.DeviceID); err != nil {
		return Alert{}, err
	}
	if err := ValidateMetricName(a.Metric); err != nil {
		return Alert{}, err
	}
	if a.AlertID == "" || len(a.AlertID) > 128 {
		return Alert{}, errors.New("alert_id must be 1 to 128 characters")
	}
	if i := NotPlain(a.AlertID); i >= 0 {
		return Alert{}, fmt.Errorf("alert_id has a forbidden character at byte %d", i)
	}
	if len(a.Members) > MaxMembers {
		return Alert{}, fmt.Errorf("alert lists %d members, at most %d", len(a.Members), MaxMembers)
	}
	for _, m := range a.Members {
		if err := ValidateID("members", m); err != nil {
			return Alert{}, err
		}
	}
	if len(a.Contributors) > MaxContributors {
		return Alert{}, fmt.Errorf("alert lists %d contributors, at most %d", len(a.Contributors), MaxContributors)
	}
	for _, c := range a.Contributors {
		if err := ValidateMetricName(c.Metric); err != nil {
			return Alert{}, fmt.Errorf("contributors: %w", err)
		}
	}
	if len(a.IncidentID) > 128 || NotPlain(a.IncidentID) >= 0 && a.IncidentID != "" {
		return Alert{}, errors.New("incident_id must be at most 128 printable characters")
	}
	if a.State != StateOpen && a.State != StateResolved {
		return Alert{}, fmt.Errorf("alert state %+q is neither %q nor %q", safe(a.State), StateOpen, StateResolved)
	}
	return a, nil
}

// NotPlain returns the index of the first byte of s that is not printable
// ASCII or is a space, or -1 if there is none.
func NotPlain(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return i
		}
	}
	return -1
}
