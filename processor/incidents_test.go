package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/incident"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// fleetReadings plays devices d0..d(n-1) of site-1, one reading a second
// for secs seconds; silent(dev, sec) drops a reading.
func fleetReadings(n, secs int, silent func(dev, sec int) bool) []kafka.Message {
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var out []kafka.Message
	for sec := range secs {
		for d := range n {
			if silent(d, sec) {
				continue
			}
			dev := fmt.Sprintf("d%d", d)
			r := sensor.Reading{DeviceID: dev, Site: "site-1", TS: t0.Add(time.Duration(sec) * time.Second), Seq: int64(sec),
				Metrics: map[string]float64{"temperature": 20 + float64((sec*7+d)%5)/10}}
			out = append(out, kafka.Message{Key: []byte(dev), Value: r.AppendJSON(nil)})
		}
	}
	return out
}

func (f *fixture) produceMessages(t *testing.T, msgs []kafka.Message) {
	w, err := f.cfg.Kafka.Writer(1000, time.Millisecond)
	require.NoError(t, err)
	defer w.Close()
	for i := range msgs {
		msgs[i].Topic = f.cfg.Kafka.ReadingsTopic
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, msgs...))
}

// alertsUntil reads the alerts topic (every partition) until done accepts
// what was read.
func (f *fixture) alertsUntil(t *testing.T, done func([]sensor.Alert) bool) []sensor.Alert {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.cfg.Kafka.BrokerList(), Topic: f.cfg.Kafka.AlertsTopic, GroupID: f.cfg.GroupID + "-reader",
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []sensor.Alert
	for !done(got) {
		m, err := r.ReadMessage(ctx)
		require.NoError(t, err, "alerts so far: %v", kinds(got))
		a, err := sensor.ParseAlert(m.Value)
		require.NoError(t, err)
		got = append(got, a)
	}
	return got
}

func kinds(as []sensor.Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.DeviceID+" "+a.Kind+" "+a.State)
	}
	return out
}

func resolvedOutage(as []sensor.Alert) bool {
	for _, a := range as {
		if a.Kind == incident.KindOutage && a.State == sensor.StateResolved {
			return true
		}
	}
	return false
}

// Six of eight devices of a site fall silent for a minute (of their own
// clock) and resume: one outage incident on the alerts topic, naming them,
// and no device gap alert; every gap alert is stored, linked to it.
func TestOutageIsOneIncidentOnTheAlertsTopic(t *testing.T) {
	s := &testSink{l: newLedger()}
	f := newFixture(t, s)
	f.cfg.Incidents.Window, f.cfg.Incidents.Hold = 2*time.Second, time.Second
	f.cfg.Detect.MaxAlertsPerHour = 0
	f.start(t)
	f.produceMessages(t, fleetReadings(8, 200, func(d, sec int) bool { return d < 6 && sec >= 100 && sec < 160 }))
	got := f.alertsUntil(t, resolvedOutage)
	var outage []sensor.Alert
	for _, a := range got {
		require.NotEqual(t, "gap", a.Kind, "no device gap alert is published inside the outage: %v", kinds(got))
		if a.Kind == incident.KindOutage {
			outage = append(outage, a)
		}
	}
	require.Len(t, outage, 2, "one incident, opened and resolved: %v", kinds(got))
	// It opens with the fifth device (more than half of eight) and
	// resolves naming all six.
	require.Equal(t, []string{"d0", "d1", "d2", "d3", "d4"}, outage[0].Members)
	require.Equal(t, sensor.SiteDevice, outage[0].DeviceID)
	require.Contains(t, outage[0].Message, "5 of 8 devices")
	require.Equal(t, []string{"d0", "d1", "d2", "d3", "d4", "d5"}, outage[1].Members)
	require.Equal(t, 6, outage[1].Suppressed)

	// The sinks have the incident and the grouped gap alerts, linked.
	require.Eventually(t, func() bool {
		linked := 0
		for _, a := range s.l.alertsSnapshot() {
			if a.Kind == "gap" && a.IncidentID == outage[0].AlertID {
				linked++
			}
		}
		return linked == 12 // six opened and resolved
	}, 20*time.Second, 20*time.Millisecond)
}

// One device silent alone raises its own gap alert, after the hold.
func TestOneSilentDeviceRaisesItsGapAlert(t *testing.T) {
	s := &testSink{l: newLedger()}
	f := newFixture(t, s)
	f.cfg.Incidents.Window, f.cfg.Incidents.Hold = 2*time.Second, time.Second
	f.start(t)
	f.produceMessages(t, fleetReadings(8, 200, func(d, sec int) bool { return d == 3 && sec >= 100 && sec < 160 }))
	got := f.alertsUntil(t, func(as []sensor.Alert) bool {
		n := 0
		for _, a := range as {
			if a.Kind == "gap" {
				n++
			}
		}
		return n == 2
	})
	for _, a := range got {
		require.NotEqual(t, sensor.SiteDevice, a.DeviceID, "no incident: %v", kinds(got))
		if a.Kind == "gap" {
			require.Equal(t, "d3", a.DeviceID)
		}
	}
}

// Two processors split the readings' partitions, so each sees only part of
// a site's devices; the raw alerts topic is keyed by site, so one incidents
// stage sees all of the site's alerts, and the census of both processors
// says how large the site is. An outage of six of its eight devices is one
// incident.
func TestOutageAcrossTwoProcessors(t *testing.T) {
	s := &testSink{l: newLedger()}
	f := newFixture(t, s)
	f.cfg.Kafka.Partitions = 4
	f.cfg.Incidents.Window, f.cfg.Incidents.Hold = 2*time.Second, time.Second
	f.cfg.Detect.MaxAlertsPerHour = 0
	p1, _, _ := f.start(t)
	second := *f // the same configuration: the same consumer groups
	p2, _, _ := second.start(t)
	time.Sleep(3 * time.Second) // the group's rebalance: both members hold partitions

	msgs := fleetReadings(8, 200, func(d, sec int) bool { return d < 6 && sec >= 100 && sec < 160 })
	f.produceMessages(t, msgs)

	got := f.alertsUntil(t, resolvedOutage)
	outages := 0
	for _, a := range got {
		require.NotEqual(t, "gap", a.Kind, "no device gap alert: %v", kinds(got))
		if a.Kind == incident.KindOutage && a.State == sensor.StateOpen {
			outages++
			require.Contains(t, a.Message, "of 8 devices", "the census of both processors adds up")
		}
	}
	require.Equal(t, 1, outages)
	for _, p := range []*Processor{p1, p2} {
		require.Positive(t, testutil.ToFloat64(p.m.readings.WithLabelValues("stored")), "each processor had a share of the readings")
	}
}

// A partition that comes back after another processor consumed it (its
// offsets jump) must not be scored against the older state: the readings
// did not stop, so there is no gap alert; its devices start over.
func TestPartitionBackFromElsewhereStartsOver(t *testing.T) {
	f := newFixture(t, &testSink{l: newLedger()})
	p, err := New(f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	det := detect.New(p.cfg.Detect)
	cen, last := newCensus(time.Minute), map[int]int64{}
	t0 := time.Now().Add(-time.Hour).UTC()
	msg := func(off int64, sec int) kafka.Message {
		r := sensor.Reading{DeviceID: "dev-1", Site: "site-1", TS: t0.Add(time.Duration(sec) * time.Second), Seq: int64(sec),
			Metrics: map[string]float64{"temperature": 20 + float64(sec%3)/10}}
		return kafka.Message{Topic: f.cfg.Kafka.ReadingsTopic, Partition: 2, Offset: off, Value: r.AppendJSON(nil)}
	}
	var first []kafka.Message
	for i := range 60 {
		first = append(first, msg(int64(i), i))
	}
	p.prepare(context.Background(), det, cen, nil, last, first)
	require.Equal(t, 1, det.Series())
	// Another processor consumed offsets 60 to 99 (seconds 60 to 99).
	wk := p.prepare(context.Background(), det, cen, nil, last, []kafka.Message{msg(100, 100), msg(101, 101)})
	for _, a := range wk.b.Alerts {
		require.NotEqual(t, "gap", a.Kind, "the readings never stopped")
	}
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.stateResets))
	// In order again: nothing more is forgotten.
	p.prepare(context.Background(), det, cen, nil, last, []kafka.Message{msg(102, 102)})
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.stateResets))
	// Handed back from the last commit (a rebalance that left the partition
	// here): what was scored is not scored again, nor forgotten.
	wk = p.prepare(context.Background(), det, cen, nil, last, []kafka.Message{msg(101, 101), msg(102, 102), msg(103, 103)})
	require.Len(t, wk.b.Readings, 1)
	require.Equal(t, int64(103), wk.b.Readings[0].Seq)
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.stateResets))
	require.Equal(t, 1, det.Series())

	// The same jump without forgetting would have raised a gap alert: the
	// test can tell.
	det2, last2 := detect.New(p.cfg.Detect), map[int]int64{}
	p.prepare(context.Background(), det2, newCensus(time.Minute), nil, last2, first)
	var gap bool
	var out []sensor.Alert
	for _, m := range []kafka.Message{msg(100, 100)} {
		r, err := sensor.ParseReading(m.Value)
		require.NoError(t, err)
		out, _ = det2.Observe(&r, out, nil)
	}
	for _, a := range out {
		gap = gap || a.Kind == "gap"
	}
	require.True(t, gap)
}

// A gap alert held by the incidents stage is not committed: when the
// processor stops before it is published, the next one reads it again from
// the raw alerts topic and publishes it. Nothing is lost.
func TestHeldAlertSurvivesARestart(t *testing.T) {
	s := &testSink{l: newLedger()}
	f := newFixture(t, s)
	f.cfg.Incidents.Window, f.cfg.Incidents.Hold = 2*time.Second, time.Hour
	p1, stop, done := f.start(t)
	f.produceMessages(t, fleetReadings(8, 200, func(d, sec int) bool { return d == 3 && sec >= 100 && sec < 160 }))
	require.Eventually(t, func() bool { return testutil.ToFloat64(p1.m.alertsHeld) == 2 }, 30*time.Second, 20*time.Millisecond,
		"the gap alert's open and resolve events are held")
	stop()
	require.NoError(t, <-done)

	f.cfg.Incidents.Hold = 500 * time.Millisecond
	f.start(t)
	got := f.alertsUntil(t, func(as []sensor.Alert) bool {
		for _, a := range as {
			if a.Kind == "gap" && a.State == sensor.StateResolved {
				return true
			}
		}
		return false
	})
	var gaps []string
	for _, a := range got {
		if a.Kind == "gap" {
			gaps = append(gaps, a.DeviceID+" "+a.State)
		}
	}
	require.Equal(t, []string{"d3 open", "d3 resolved"}, gaps)
}

// The raw alerts topic may have foreign producers: a message that is not an
// alert, or a census that does not read as one, goes to the dead letters
// with its reason, and the stage goes on.
func TestForeignRawAlertsAreDeadLettered(t *testing.T) {
	f := newFixture(t, &testSink{l: newLedger()})
	f.cfg.Incidents.Hold = 0
	p, _, _ := f.start(t)
	census := []kafka.Header{{Key: CensusHeader, Value: []byte("census")}}
	bad := []kafka.Message{
		{Value: []byte(`not an alert`)},
		{Value: []byte(`{"site":"s","partition":0,"devices":3`), Headers: census},
		{Value: []byte(`{"site":"bad site","partition":0,"devices":3}`), Headers: census},
		{Value: []byte(`{"site":"s","partition":0,"devices":-1}`), Headers: census},
	}
	good := sensor.Alert{AlertID: "a1", DeviceID: "d1", Site: "s", Metric: "temperature", Kind: "zscore", State: sensor.StateOpen,
		TS: time.Now().UTC(), StartedAt: time.Now().UTC()}
	v, err := json.Marshal(good)
	require.NoError(t, err)
	w, err := f.cfg.Kafka.Writer(10, time.Millisecond)
	require.NoError(t, err)
	defer w.Close()
	for i := range bad {
		bad[i].Topic, bad[i].Key = f.cfg.Kafka.RawAlerts(), []byte("s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, append(bad, kafka.Message{Topic: f.cfg.Kafka.RawAlerts(), Key: []byte("s"), Value: v})...))

	got := f.alertsUntil(t, func(as []sensor.Alert) bool { return len(as) == 1 })
	require.Equal(t, "a1", got[0].AlertID, "the valid alert after them is published")
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.cfg.Kafka.BrokerList(), Topic: f.cfg.Kafka.DeadLetterTopic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var details []string
	for range bad {
		m, err := r.ReadMessage(ctx)
		require.NoError(t, err)
		h := kafkax.HeaderMap(m)
		require.Equal(t, f.cfg.Kafka.RawAlerts(), h[kafkax.HeaderSourceTopic])
		details = append(details, h[kafkax.HeaderReason]+": "+h[kafkax.HeaderDetail])
	}
	require.Len(t, details, 4)
	require.Contains(t, details[0], sensor.ReasonInvalidJSON)
	require.Contains(t, details[1], "census is not valid JSON")
	require.Contains(t, details[2], sensor.ReasonInvalidID)
	require.Contains(t, details[3], "census counts -1 devices")
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.rejected.WithLabelValues(sensor.ReasonInvalidID)))
}

// holdAlerts holds the first write of alert events alone (the incidents
// stage's) until hold is closed.
type holdAlerts struct {
	*testSink
	once          sync.Once
	entered, hold chan struct{}
}

func (s *holdAlerts) Write(ctx context.Context, b sink.Batch) error {
	if len(b.Alerts) > 0 && len(b.Readings) == 0 {
		s.once.Do(func() {
			close(s.entered)
			<-s.hold
		})
	}
	return s.testSink.Write(ctx, b)
}

// The incidents stage publishes an alert while the store of an earlier one
// is held: its stores and commits follow its decisions, in order, without
// delaying them. The raw alerts are committed only once stored.
func TestIncidentAlertsDoNotWaitForTheStore(t *testing.T) {
	hs := &holdAlerts{testSink: &testSink{l: newLedger()}, entered: make(chan struct{}), hold: make(chan struct{})}
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(hs.hold) }) })
	f := newFixture(t, hs.testSink)
	f.cfg.Sinks = []sink.Spec{sink.Fixed("test", hs)}
	f.cfg.Incidents.Window, f.cfg.Incidents.Hold = 2*time.Second, time.Second
	p, _, _ := f.start(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var msgs []kafka.Message
	for sec := range 60 {
		for d, spikeAt := range []int{40, 50} {
			dev := fmt.Sprintf("d%d", d)
			v := 20 + float64((sec*7+d)%5)/10
			if sec == spikeAt {
				v = 500
			}
			r := sensor.Reading{DeviceID: dev, Site: "site-1", TS: t0.Add(time.Duration(sec) * time.Second), Seq: int64(sec), Metrics: map[string]float64{"temperature": v}}
			msgs = append(msgs, kafka.Message{Key: []byte(dev), Value: r.AppendJSON(nil)})
		}
	}
	f.produceMessages(t, msgs)
	<-hs.entered // d0's alert is held in the store
	f.alertsUntil(t, func(as []sensor.Alert) bool {
		for _, a := range as {
			if a.DeviceID == "d1" && a.State == sensor.StateOpen {
				return true
			}
		}
		return false
	})
	raw := testutil.ToFloat64(p.m.grouped.WithLabelValues("published"))
	require.GreaterOrEqual(t, raw, 2.0, "both alerts published while the first store is held")
	release.Do(func() { close(hs.hold) })
	require.Eventually(t, func() bool {
		for _, a := range hs.l.alertsSnapshot() {
			if a.DeviceID == "d1" {
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "d1's alert stored once the store is released")
}

// blockAlerts is a sink whose stores of alerts never finish: each waits
// for its context to end.
type blockAlerts struct {
	*testSink
	once    sync.Once
	entered chan struct{}
}

func (s *blockAlerts) Write(ctx context.Context, b sink.Batch) error {
	if len(b.Alerts) > 0 && len(b.Readings) == 0 {
		s.once.Do(func() { close(s.entered) })
		<-ctx.Done()
		return ctx.Err()
	}
	return s.testSink.Write(ctx, b)
}

// At shutdown the incidents stage gives up a store that does not finish
// within the drain time and commits nothing after it: the next run reads
// those raw alerts again, publishes them once more with the same ids, and
// stores them.
func TestIncidentStoreLeftAtShutdownIsReadAgain(t *testing.T) {
	bs := &blockAlerts{testSink: &testSink{l: newLedger()}, entered: make(chan struct{})}
	f := newFixture(t, bs.testSink)
	f.cfg.Sinks = []sink.Spec{sink.Fixed("test", bs)}
	f.cfg.Incidents.Window, f.cfg.Incidents.Hold = 2*time.Second, time.Second
	f.cfg.DrainTimeout = 300 * time.Millisecond
	_, stop, done := f.start(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var msgs []kafka.Message
	for sec := range 60 {
		v := 20 + float64(sec%5)/10
		if sec == 40 {
			v = 500
		}
		r := sensor.Reading{DeviceID: "d0", Site: "site-1", TS: t0.Add(time.Duration(sec) * time.Second), Seq: int64(sec), Metrics: map[string]float64{"temperature": v}}
		msgs = append(msgs, kafka.Message{Key: []byte("d0"), Value: r.AppendJSON(nil)})
	}
	f.produceMessages(t, msgs)
	select {
	case <-bs.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the alert never reached the store")
	}
	first := f.alertsUntil(t, func(as []sensor.Alert) bool { return len(as) > 0 })
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the processor did not stop after its drain time")
	}
	require.Empty(t, bs.l.alertsSnapshot(), "nothing stored yet")

	f.cfg.Sinks = []sink.Spec{sink.Fixed("test", bs.testSink)}
	f.start(t)
	require.Eventually(t, func() bool { return len(bs.l.alertsSnapshot()) > 0 }, 30*time.Second, 20*time.Millisecond,
		"the next run stores the alert the first left")
	stored := bs.l.alertsSnapshot()[0]
	require.Equal(t, first[0].AlertID, stored.AlertID)
	require.Equal(t, "d0", stored.DeviceID)
}
