package sensor

import (
	"crypto/sha256"
	"encoding/hex"
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
}

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
