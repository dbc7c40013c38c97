package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/incident"
)

// Incident grouping through Mosquitto, Kafka, InfluxDB and Cassandra: on
// site A, six of eight devices' temperatures rise together for 30 s (one
// site_wide incident naming its members, published on Kafka and on MQTT
// {prefix}/{site}/_site/alerts; the alert of a device that joins after the
// incident opened is stored, linked, not published); on site B one device
// falls silent for a minute alone (its own gap alert, no incident).
func TestIncidentsOnRealServers(t *testing.T) {
	s := newStack(t)
	// One partition: every open event of the rise precedes every resolve
	// (with several, one device's resolve may overtake another's open; the
	// grouper's unit tests cover that order).
	s.kafka.Partitions = 1
	s.bridge.Kafka, s.processor.Kafka = s.kafka, s.kafka
	// Shorter than the defaults so the test is quick; the rules are the same.
	s.processor.Incidents.Window, s.processor.Incidents.Hold = 5*time.Second, 2*time.Second
	s.processor.Detect.MaxAlertsPerHour = 0
	ctx := context.Background()
	s.startServices(t, ctx)
	col := subscribeAlerts(t, s)

	siteA, siteB := s.id+"-A", s.id+"-B"
	dev := func(site string, i int) string { return fmt.Sprintf("%s-%d", site, i) }
	o, err := s.mqtt.Options(s.id+"-fleet", true)
	require.NoError(t, err)
	c := mqtt.NewClient(o)
	require.NoError(t, mqttx.Wait(c.Connect(), 10*time.Second))
	defer c.Disconnect(100)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	topics := sensor.Topics{Prefix: s.prefix}
	var toks []mqtt.Token
	for sec := range 200 {
		for _, site := range []string{siteA, siteB} {
			for i := range 8 {
				if site == siteB && i == 3 && sec >= 100 && sec < 160 {
					continue // silent alone
				}
				v := 20 + float64((sec*7+i)%5)/10
				if site == siteA && i < 6 && sec >= 100 && sec < 130 {
					v += 20 // the building warms up
				}
				p := fmt.Sprintf(`{"ts":%q,"seq":%d,"metrics":{"temperature":%g}}`, t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), sec, v)
				toks = append(toks, c.Publish(topics.Telemetry(site, dev(site, i)), 1, false, p))
			}
		}
	}
	for _, tok := range toks {
		require.NoError(t, mqttx.Wait(tok, 30*time.Second))
	}

	// Site A's incident reaches MQTT under the site's own topic, and resolves
	// once its members did.
	incidentTopic := topics.Alerts(siteA, sensor.SiteDevice)
	var wide []sensor.Alert
	require.Eventually(t, func() bool {
		wide = wide[:0]
		for _, m := range col.all() {
			if m.topic == incidentTopic {
				var a sensor.Alert
				require.NoError(t, json.Unmarshal(m.payload, &a))
				wide = append(wide, a)
			}
		}
		return len(wide) == 2
	}, 90*time.Second, 200*time.Millisecond, "site_wide open and resolved on %s; alerts on MQTT: %s", incidentTopic, func() string {
		var l []string
		for _, m := range col.all() {
			l = append(l, string(m.payload))
		}
		return strings.Join(l, "\n")
	}())
	require.Equal(t, incident.KindSiteWide, wide[0].Kind)
	require.Equal(t, "temperature", wide[0].Metric)
	require.Equal(t, sensor.StateOpen, wide[0].State)
	require.Equal(t, sensor.StateResolved, wide[1].State)
	require.Equal(t, wide[0].AlertID, wide[1].AlertID)
	require.Len(t, wide[0].Members, 5, "it opens with the fifth of eight devices")
	require.Equal(t, 6, wide[1].MemberCount)
	for _, m := range wide[1].Members {
		i := slices.Index([]string{dev(siteA, 0), dev(siteA, 1), dev(siteA, 2), dev(siteA, 3), dev(siteA, 4), dev(siteA, 5)}, m)
		require.GreaterOrEqual(t, i, 0, "member %s did not rise", m)
	}
	require.Equal(t, 1, wide[1].Suppressed)

	// Wait out the hold of site B's gap alert, then read what Kafka has.
	require.Eventually(t, func() bool {
		for _, m := range col.all() {
			if m.topic == topics.Alerts(siteB, dev(siteB, 3)) {
				return true
			}
		}
		return false
	}, 60*time.Second, 200*time.Millisecond, "the lone silent device's gap alert reaches MQTT")
	// The mirror put it on MQTT from Kafka, so Kafka holds it; read until
	// the read sees it.
	var opened map[string][]string // site → "device kind" of alerts opened on Kafka
	found := func() bool {
		opened = map[string][]string{}
		for _, m := range readAll(t, s.kafka.Brokers, s.kafka.AlertsTopic) {
			a, err := sensor.ParseAlert(m.Value)
			require.NoError(t, err)
			if a.State == sensor.StateOpen {
				opened[a.Site] = append(opened[a.Site], a.DeviceID+" "+a.Kind)
			}
		}
		return slices.Contains(opened[siteB], dev(siteB, 3)+" gap")
	}
	for end := time.Now().Add(30 * time.Second); !found(); time.Sleep(time.Second) {
		require.True(t, time.Now().Before(end), "the lone silent device's gap alert on Kafka; opened there: %v", opened)
	}
	for _, k := range opened[siteB] {
		require.NotContains(t, k, sensor.SiteDevice, "one silent device is no incident")
	}
	devAlerts := 0
	for _, k := range opened[siteA] {
		if !strings.HasPrefix(k, sensor.SiteDevice) {
			devAlerts++
		}
	}
	require.Equal(t, 5, devAlerts, "site A: the five alerts before the incident are published, the sixth is grouped: %v", opened[siteA])

	// InfluxDB has the incident and the grouped alert, linked to it.
	cl := influxdb2.NewClient(s.influx.URL, s.influx.Token)
	defer cl.Close()
	count := func(filter string) int64 {
		q := fmt.Sprintf(`from(bucket: %q) |> range(start: -30d)
  |> filter(fn: (r) => r._measurement == "alerts" and r.site == %q and %s)
  |> group() |> count()`, s.influx.Bucket, siteA, filter)
		res, err := cl.QueryAPI(s.influx.Org).Query(ctx, q)
		require.NoError(t, err)
		defer res.Close()
		var n int64
		for res.Next() {
			n, _ = res.Record().Value().(int64)
		}
		return n
	}
	require.Eventually(t, func() bool {
		return count(`r._field == "incident_id" and r._value == "`+wide[0].AlertID+`"`) >= 1 &&
			count(`r.kind == "site_wide" and r._field == "member_count"`) == 2
	}, 30*time.Second, 500*time.Millisecond)

	checkDashboardPanel(t, s, incidentsPanel)

	// Cassandra has the incident under the site's device.
	sess := cassandraSession(t, s)
	defer sess.Close()
	var kind string
	require.NoError(t, sess.Query(`SELECT kind FROM alerts_by_device WHERE device_id = ? AND started_at = ? AND alert_id = ?`,
		sensor.SiteDevice, wide[0].StartedAt, wide[0].AlertID).Scan(&kind))
	require.Equal(t, incident.KindSiteWide, kind)
}
