package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// hostile is one broken or malicious message and the rejection it must get.
type hostile struct {
	name    string
	device  string // the device level of the topic; empty: a fresh valid id
	site    string // the site level; empty: the stack's hostile site
	payload string
	reason  string
}

const okPayload = `{"metrics":{"temperature":21.5}}`

func m(metrics string) string { return `{"metrics":{` + metrics + `}}` }

func hostileCorpus() []hostile {
	manyMetrics := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"m%04d":1`, i)
		}
		return m(b.String())
	}
	now := time.Now().UTC()
	return []hostile{
		// Not JSON, or not the JSON we accept.
		{name: "invalid JSON", payload: `not json`, reason: sensor.ReasonInvalidJSON},
		{name: "truncated JSON", payload: `{"metrics":{"temperature":1}`, reason: sensor.ReasonInvalidJSON},
		{name: "trailing data", payload: `{"metrics":{"temperature":1}} {}`, reason: sensor.ReasonInvalidJSON},
		{name: "single quotes", payload: `{'metrics':{'temperature':1}}`, reason: sensor.ReasonInvalidJSON},
		{name: "a comment", payload: `{"metrics":{"temperature":1} /* x */}`, reason: sensor.ReasonInvalidJSON},
		{name: "NUL bytes", payload: "\x00\x00\x00", reason: sensor.ReasonInvalidJSON},
		{name: "byte-order mark", payload: "\xef\xbb\xbf" + okPayload, reason: sensor.ReasonInvalidJSON},
		{name: "invalid UTF-8 in a string", payload: "{\"metrics\":{\"temperature\":1},\"site\":\"\xff\"}", reason: sensor.ReasonInvalidUTF8},
		{name: "overlong UTF-8 encoding", payload: "{\"metrics\":{\"temperature\":1},\"site\":\"\xc0\xaf\"}", reason: sensor.ReasonInvalidUTF8},
		{name: "UTF-16 surrogate in UTF-8", payload: "{\"metrics\":{\"temperature\":1},\"site\":\"\xed\xa0\x80\"}", reason: sensor.ReasonInvalidUTF8},
		{name: "empty payload", payload: ``, reason: sensor.ReasonEmptyPayload},
		{name: "whitespace only", payload: " \n\t ", reason: sensor.ReasonEmptyPayload},
		{name: "an array", payload: `[` + okPayload + `]`, reason: sensor.ReasonNotAnObject},
		{name: "a string", payload: `"hello"`, reason: sensor.ReasonNotAnObject},
		{name: "null", payload: `null`, reason: sensor.ReasonNotAnObject},
		{name: "a number", payload: `42`, reason: sensor.ReasonNotAnObject},
		{name: "deep nesting at the top", payload: strings.Repeat("[", 30000), reason: sensor.ReasonNotAnObject},
		// Values.
		{name: "NaN as a string", payload: m(`"temperature":"NaN"`), reason: sensor.ReasonWrongType},
		{name: "bare NaN", payload: m(`"temperature":NaN`), reason: sensor.ReasonInvalidJSON},
		{name: "Infinity as a string", payload: m(`"temperature":"Infinity"`), reason: sensor.ReasonWrongType},
		{name: "bare Infinity", payload: m(`"temperature":Infinity`), reason: sensor.ReasonInvalidJSON},
		{name: "bare -Infinity", payload: m(`"temperature":-Infinity`), reason: sensor.ReasonInvalidJSON},
		{name: "huge number", payload: m(`"temperature":1e999`), reason: sensor.ReasonValueOutOfRange},
		{name: "huge negative number", payload: m(`"temperature":-1e999`), reason: sensor.ReasonValueOutOfRange},
		{name: "tiny number that underflows", payload: m(`"temperature":1e-999`), reason: sensor.ReasonValueOutOfRange},
		{name: "number of 50,000 digits", payload: m(`"temperature":` + strings.Repeat("9", 50000)), reason: sensor.ReasonValueOutOfRange},
		{name: "hexadecimal number", payload: m(`"temperature":0x10`), reason: sensor.ReasonInvalidJSON},
		{name: "leading zeros", payload: m(`"temperature":007`), reason: sensor.ReasonInvalidJSON},
		{name: "boolean value", payload: m(`"temperature":true`), reason: sensor.ReasonWrongType},
		{name: "null value", payload: m(`"temperature":null`), reason: sensor.ReasonWrongType},
		{name: "array value", payload: m(`"temperature":[1]`), reason: sensor.ReasonWrongType},
		{name: "object value", payload: m(`"temperature":{"v":1}`), reason: sensor.ReasonWrongType},
		{name: "deep nesting in a value", payload: m(`"temperature":` + strings.Repeat("[", 20000)), reason: sensor.ReasonWrongType},
		// The metrics object.
		{name: "metrics is an array", payload: `{"metrics":[1,2]}`, reason: sensor.ReasonWrongType},
		{name: "metrics is a string", payload: `{"metrics":"temperature=1"}`, reason: sensor.ReasonWrongType},
		{name: "empty metrics", payload: `{"metrics":{}}`, reason: sensor.ReasonNoMetrics},
		{name: "no metrics", payload: `{"seq":1}`, reason: sensor.ReasonNoMetrics},
		{name: "65 metrics", payload: manyMetrics(65), reason: sensor.ReasonTooManyMetrics},
		{name: "5,000 metrics", payload: manyMetrics(5000), reason: sensor.ReasonTooManyMetrics},
		{name: "upper-case metric name", payload: m(`"Temperature":1`), reason: sensor.ReasonInvalidMetricName},
		{name: "line-protocol metacharacters in a metric name", payload: m(`"t,site=x y":1`), reason: sensor.ReasonInvalidMetricName},
		{name: "Flux in a metric name", payload: m(`"t\") |> drop() //":1`), reason: sensor.ReasonInvalidMetricName},
		{name: "metric name of 65 characters", payload: m(`"` + strings.Repeat("t", 65) + `":1`), reason: sensor.ReasonInvalidMetricName},
		{name: "empty metric name", payload: m(`"":1`), reason: sensor.ReasonInvalidMetricName},
		{name: "duplicate key", payload: `{"metrics":{"temperature":1},"metrics":{"temperature":2}}`, reason: sensor.ReasonDuplicateKey},
		{name: "duplicate metric", payload: m(`"temperature":1,"temperature":2`), reason: sensor.ReasonDuplicateKey},
		{name: "unknown field", payload: `{"metrics":{"temperature":1},"extra":1}`, reason: sensor.ReasonUnknownField},
		{name: "Flux injection in an unknown field", payload: `{"metrics":{"temperature":1},"injected":"x\" |> drop() //"}`, reason: sensor.ReasonUnknownField},
		// Size.
		{name: "10 MB payload", payload: `{"metrics":{"temperature":1},"pad":"` + strings.Repeat("A", 10<<20) + `"}`, reason: sensor.ReasonPayloadTooLarge},
		{name: "one byte over the limit", payload: `{"metrics":{"temperature":1},"pad":"` + strings.Repeat("A", sensor.MaxPayloadBytes-37) + `"}`, reason: sensor.ReasonPayloadTooLarge},
		// Identity in the payload.
		{name: "device_id contradicts the topic", payload: `{"device_id":"someone-else","metrics":{"temperature":1}}`, reason: sensor.ReasonIDMismatch},
		{name: "site contradicts the topic", payload: `{"site":"another-site","metrics":{"temperature":1}}`, reason: sensor.ReasonIDMismatch},
		{name: "device_id with a quote", payload: `{"device_id":"a\"b","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with line-protocol metacharacters", payload: `{"device_id":"d,site=x","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with a space", payload: `{"device_id":"a b","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with a newline", payload: `{"device_id":"a\nb","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with a backslash", payload: `{"device_id":"a\\b","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with an escaped NUL", payload: `{"device_id":"a\u0000b","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with Flux", payload: `{"device_id":"\") |> drop() //","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "site with CQL injection", payload: `{"site":"x'); DROP TABLE readings; --","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id of 65 characters", payload: `{"device_id":"` + strings.Repeat("d", 65) + `","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id with a non-ASCII letter", payload: `{"device_id":"dév","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidID},
		{name: "device_id is a number", payload: `{"device_id":5,"metrics":{"temperature":1}}`, reason: sensor.ReasonWrongType},
		// Time and sequence.
		{name: "ts far in the past", payload: `{"ts":"1970-01-01T00:00:00Z","metrics":{"temperature":1}}`, reason: sensor.ReasonTimestampRange},
		{name: "ts far in the future", payload: `{"ts":"2999-01-01T00:00:00Z","metrics":{"temperature":1}}`, reason: sensor.ReasonTimestampRange},
		{name: "ts two hours ahead", payload: `{"ts":"` + now.Add(2*time.Hour).Format(time.RFC3339) + `","metrics":{"temperature":1}}`, reason: sensor.ReasonTimestampRange},
		{name: "ts not RFC 3339", payload: `{"ts":"yesterday","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidTimestamp},
		{name: "ts out of calendar", payload: `{"ts":"2026-13-45T99:00:00Z","metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidTimestamp},
		{name: "ts as a number", payload: `{"ts":1700000000,"metrics":{"temperature":1}}`, reason: sensor.ReasonWrongType},
		{name: "negative seq", payload: `{"seq":-5,"metrics":{"temperature":1}}`, reason: sensor.ReasonNegativeSeq},
		{name: "fractional seq", payload: `{"seq":1.5,"metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidSeq},
		{name: "seq beyond 64 bits", payload: `{"seq":99999999999999999999,"metrics":{"temperature":1}}`, reason: sensor.ReasonInvalidSeq},
		{name: "seq as a string", payload: `{"seq":"1","metrics":{"temperature":1}}`, reason: sensor.ReasonWrongType},
		// Identity in the topic.
		{name: "topic device id with a quote", device: `dev"x`, payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id with an apostrophe (CQL)", device: `dev'x`, payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id with a comma and equals (line protocol)", device: `dev,site=x`, payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id with a space", device: `dev x`, payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id with a backslash", device: `dev\x`, payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id with a Flux pipe", device: `dev|>x`, payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id of 200 characters", device: strings.Repeat("d", 200), payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic device id with a non-ASCII letter", device: "dév", payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "empty device id in the topic", device: "-", payload: okPayload, reason: sensor.ReasonInvalidID}, // "-" is replaced by "" below
		{name: "empty site in the topic", site: "-", payload: okPayload, reason: sensor.ReasonInvalidID},
		{name: "topic site with CQL injection", site: `x');DROP`, payload: okPayload, reason: sensor.ReasonInvalidID},
	}
}

// Every kind of hostile or broken input ends in the real dead-letter topic
// with its precise reason, is counted by reason, crashes nothing and leaves
// the stores with the valid readings only. Foreign messages written straight
// to the readings topic get the same treatment from the processor.
func TestHostileInput(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg := s.startServices(t, ctx)

	corpus := hostileCorpus()
	kinds := map[string]bool{}
	for _, h := range corpus {
		require.False(t, kinds[h.name], "duplicate case %q", h.name)
		kinds[h.name] = true
	}
	require.GreaterOrEqual(t, len(corpus), 40)

	o, err := s.mqtt.Options(s.id+"-hostile", true)
	require.NoError(t, err)
	c := mqtt.NewClient(o)
	require.NoError(t, mqttx.Wait(c.Connect(), 10*time.Second))
	defer c.Disconnect(100)
	topics := sensor.Topics{Prefix: s.prefix}
	site := s.id + "-site-h"
	good := s.id + "-dev-ok"
	publishGood := func(from, n int) {
		for i := from; i < from+n; i++ {
			p := fmt.Sprintf(`{"ts":%q,"seq":%d,"metrics":{"temperature":%d}}`, time.Now().UTC().Add(-time.Minute+time.Duration(i)*time.Second).Format(time.RFC3339Nano), i, 20+i%3)
			require.NoError(t, mqttx.Wait(c.Publish(topics.Telemetry(site, good), 1, false, p), 10*time.Second))
		}
	}
	publishGood(0, 10)

	byTopic := map[string]hostile{}
	for i, h := range corpus {
		dev, st := h.device, h.site
		switch dev {
		case "":
			dev = fmt.Sprintf("%s-h%02d", s.id, i)
		case "-":
			dev = ""
		}
		switch st {
		case "":
			st = site
		case "-":
			st = ""
		}
		topic := topics.Telemetry(st, dev)
		_, dup := byTopic[topic]
		require.False(t, dup, "two cases on %q", topic)
		byTopic[topic] = h
		require.NoError(t, mqttx.Wait(c.Publish(topic, 1, false, h.payload), 30*time.Second), h.name)
	}
	publishGood(10, 10)

	// Foreign producers on the readings topic: the processor's own checks.
	foreign := map[string]string{
		`not json`: sensor.ReasonInvalidJSON,
		``:         sensor.ReasonEmptyPayload,
		`{"device_id":"a,b=c","site":"s","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"temperature":1}}`:                        sensor.ReasonInvalidID,
		`{"device_id":"d","site":"x'); DROP TABLE readings; --","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"temperature":1}}`: sensor.ReasonInvalidID,
		`{"device_id":"d","site":"s","seq":1,"metrics":{"temperature":1}}`:                                                        sensor.ReasonInvalidTimestamp,
		`{"device_id":"d","site":"s","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"temperature":"NaN"}}`:                        sensor.ReasonWrongType,
		`{"device_id":"d","site":"s","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"t v=1 ":1}}`:                                 sensor.ReasonInvalidMetricName,
	}
	w, err := s.kafka.Writer(len(foreign), 10*time.Millisecond)
	require.NoError(t, err)
	var msgs []kafka.Message
	for p := range foreign {
		msgs = append(msgs, kafka.Message{Topic: s.kafka.ReadingsTopic, Key: []byte("foreign"), Value: []byte(p)})
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))
	require.NoError(t, w.Close())

	// Foreign events on the alerts topic: the bridge mirrors only valid
	// ones to MQTT, on their own device's topic, and counts the rest.
	everything := &collector{}
	require.NoError(t, mqttx.Wait(c.Subscribe(s.prefix+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		everything.mu.Lock()
		everything.msgs = append(everything.msgs, received{m.Topic(), m.Payload()})
		everything.mu.Unlock()
	}), 10*time.Second))
	validAlert := fmt.Sprintf(`{"alert_id":"a1","device_id":%q,"site":%q,"metric":"temperature","kind":"zscore","severity":"warning","state":"open","ts":"2026-11-22T10:00:07Z"}`, good, site)
	hostileAlerts := []string{
		`not json`,
		strings.Replace(validAlert, `"device_id":"`+good+`"`, `"device_id":"#"`, 1),
		strings.Replace(validAlert, `"device_id":"`+good+`"`, `"device_id":"`+good+`/x"`, 1),
		strings.Replace(validAlert, `"site":"`+site+`"`, `"site":"+"`, 1),
		strings.Replace(validAlert, `"state":"open"`, `"state":"exploded"`, 1),
		strings.Replace(validAlert, `"alert_id":"a1"`, `"alert_id":"a\u001b[2J"`, 1),
		strings.Replace(validAlert, `"metric":"temperature"`, `"metric":"t v=1"`, 1),
		validAlert + `{}`,
	}
	aw, err := s.kafka.Writer(1, 10*time.Millisecond)
	require.NoError(t, err)
	for _, a := range append(hostileAlerts, validAlert) {
		require.NoError(t, aw.WriteMessages(ctx, kafka.Message{Topic: s.kafka.AlertsTopic, Key: []byte(good), Value: []byte(a)}))
	}
	require.NoError(t, aw.Close())
	wantAlertTopic := topics.Alerts(site, good)
	require.Eventually(t, func() bool {
		return counterByLabel(t, reg, "sensorflow_bridge_alerts_total", "result")["published"] == 1
	}, time.Minute, 200*time.Millisecond, "the valid alert was not mirrored")
	require.Equal(t, map[string]float64{"published": 1, "invalid": float64(len(hostileAlerts))},
		counterByLabel(t, reg, "sensorflow_bridge_alerts_total", "result"))
	require.Eventually(t, func() bool {
		for _, m := range everything.all() {
			if m.topic == wantAlertTopic {
				return true
			}
		}
		return false
	}, 10*time.Second, 100*time.Millisecond, "the valid alert did not reach MQTT")
	for _, m := range everything.all() {
		if _, ours := byTopic[m.topic]; ours || m.topic == topics.Telemetry(site, good) {
			continue
		}
		require.Equal(t, wantAlertTopic, m.topic, "mirrored %q", m.payload)
		require.Equal(t, validAlert, string(m.payload))
	}

	// Each message has its dead letter, with its reason.
	want := len(corpus) + len(foreign)
	var dead []kafka.Message
	deadline := time.Now().Add(2 * time.Minute)
	for {
		dead = readAll(t, s.kafka.Brokers, s.kafka.DeadLetterTopic)
		if len(dead) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	require.Len(t, dead, want, "dead letters")
	seen := map[string]bool{}
	for _, d := range dead {
		hd := kafkax.HeaderMap(d)
		require.NotEmpty(t, hd["detail"])
		require.NotEmpty(t, hd["received_at"])
		if hd["source_topic"] == s.kafka.ReadingsTopic {
			reason, ok := foreign[string(d.Value)]
			require.True(t, ok, "unexpected dead letter %q", d.Value)
			require.Equal(t, reason, hd["reason"], "processor's reason for %q (%s)", d.Value, hd["detail"])
			seen["foreign "+string(d.Value)] = true
			continue
		}
		h, ok := byTopic[hd["source_topic"]]
		require.True(t, ok, "dead letter from unexpected topic %q", hd["source_topic"])
		require.Equal(t, h.reason, hd["reason"], "%s: detail %q", h.name, hd["detail"])
		require.Equal(t, fmt.Sprint(len(h.payload)), hd["original_size"], h.name)
		if len(h.payload) > 256<<10 {
			require.Equal(t, "true", hd["truncated"], h.name)
			require.Equal(t, h.payload[:len(d.Value)], string(d.Value), h.name)
		} else {
			require.Equal(t, h.payload, string(d.Value), h.name)
		}
		require.False(t, seen[h.name], "%s dead-lettered twice", h.name)
		seen[h.name] = true
	}
	require.Len(t, seen, want)

	// Counted by reason.
	wantBridge, wantProc := map[string]float64{}, map[string]float64{}
	for _, h := range corpus {
		wantBridge[h.reason]++
	}
	for _, r := range foreign {
		wantProc[r]++
	}
	require.Equal(t, wantBridge, counterByLabel(t, reg, "sensorflow_bridge_rejected_total", "reason"))
	require.Equal(t, wantProc, counterByLabel(t, reg, "sensorflow_processor_rejected_total", "reason"))
	t.Logf("%d hostile messages over MQTT, %d foreign on the readings topic: %d reasons from the bridge, %d from the processor",
		len(corpus), len(foreign), len(wantBridge), len(wantProc))

	// The stores hold the 20 valid readings and nothing else.
	deadline = time.Now().Add(time.Minute)
	var got map[string]int
	for {
		got = influxCountsBySite(t, s, site)
		if got[good] == 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	require.Equal(t, map[string]int{good: 20}, got, "InfluxDB")
	sess := cassandraSession(t, s)
	defer sess.Close()
	var devices []string
	iter := sess.Query(`SELECT DISTINCT device_id, metric, day FROM readings`).Iter()
	var dev, metric string
	var day time.Time
	for iter.Scan(&dev, &metric, &day) {
		devices = append(devices, dev+"/"+metric)
	}
	require.NoError(t, iter.Close())
	require.Equal(t, []string{good + "/temperature"}, devices, "Cassandra partitions")
	require.Equal(t, 20, cassandraReadings(t, sess, good))
}

// counterByLabel sums a counter's non-zero samples by one label.
func counterByLabel(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			if v := mt.GetCounter().GetValue(); v > 0 {
				for _, l := range mt.GetLabel() {
					if l.GetName() == label {
						out[l.GetValue()] += v
					}
				}
			}
		}
	}
	return out
}

// influxCountsBySite counts the temperature points of every device of a site.
func influxCountsBySite(t *testing.T, s *stack, site string) map[string]int {
	return influxQueryCounts(t, s, fmt.Sprintf(`r.site == %q`, site))
}
