package sensor

import "strings"

// Topics builds and parses the MQTT topics of one deployment. Prefix is the
// first topic level, "sensorflow" by default.
type Topics struct {
	Prefix string
}

// Telemetry is the topic a device publishes readings on.
func (t Topics) Telemetry(site, device string) string {
	return t.Prefix + "/" + site + "/" + device + "/telemetry"
}

// Alerts is the topic the bridge mirrors a device's alerts to.
func (t Topics) Alerts(site, device string) string {
	return t.Prefix + "/" + site + "/" + device + "/alerts"
}

// Status is the retained topic a device announces online/offline on.
func (t Topics) Status(site, device string) string {
	return t.Prefix + "/" + site + "/" + device + "/status"
}

// TelemetryFilter matches every device's telemetry.
func (t Topics) TelemetryFilter() string { return t.Prefix + "/+/+/telemetry" }

// AlertsFilter matches every device's alerts.
func (t Topics) AlertsFilter() string { return t.Prefix + "/+/+/alerts" }

// ParseTelemetry extracts site and device id from a telemetry topic and
// validates both. It returns a *Rejection with ReasonInvalidTopic or
// ReasonInvalidID.
func (t Topics) ParseTelemetry(topic string) (site, device string, err error) {
	p := len(t.Prefix)
	if len(topic) <= p || topic[p] != '/' || topic[:p] != t.Prefix {
		return "", "", reject(ReasonInvalidTopic, "topic %+q does not start with %q", safe(topic), t.Prefix+"/")
	}
	site, rest, ok1 := strings.Cut(topic[p+1:], "/")
	device, kind, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 || kind != "telemetry" {
		return "", "", reject(ReasonInvalidTopic, "topic %+q is not %s/{site}/{device_id}/telemetry", safe(topic), t.Prefix)
	}
	if err := ValidateID("site in topic", site); err != nil {
		return "", "", err
	}
	if err := ValidateID("device_id in topic", device); err != nil {
		return "", "", err
	}
	return site, device, nil
}
