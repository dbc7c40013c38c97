package processor

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
)

// expectedAlerts runs one uninterrupted detector over the readings, in
// order, and returns the "id state" of every alert event it raises.
func expectedAlerts(t *testing.T, cfg detect.Config, msgs []kafka.Message) []string {
	d := detect.New(cfg)
	var out []sensor.Alert
	for _, m := range msgs {
		r, err := sensor.ParseReading(m.Value)
		require.NoError(t, err)
		out, _ = d.Observe(&r, out, nil)
	}
	return alertKeys(out)
}

func alertKeys(as []sensor.Alert) []string {
	var out []string
	for _, a := range as {
		k := a.AlertID + " " + a.State
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// A processor that stops and a new one that takes over continue the
// detector where it stood: the alerts on every reading after the restart
// equal those of one uninterrupted detector over all the readings. Here a
// spike five readings after the restart alerts, which a detector that
// starts over (warming up for 30 readings) would miss.
func TestCheckpointCarriesTheDetectorAcrossARestart(t *testing.T) {
	f := newFixture(t, &testSink{l: newLedger()})
	f.cfg.Kafka.Partitions = 2
	f.cfg.IncidentsOff = true
	f.cfg.CheckpointInterval = 200 * time.Millisecond
	spike := func(d, sec int) bool { return d == 1 && sec == 45 }
	fleet := fleetReadings(4, 60, func(int, int) bool { return false })
	for i := range fleet {
		if r, _ := sensor.ParseReading(fleet[i].Value); spike(int(r.DeviceID[1]-'0'), int(r.Seq)) {
			r.Metrics["temperature"] = 30
			fleet[i].Value = r.AppendJSON(nil)
		}
	}
	before, after := fleet[:4*40], fleet[4*40:]
	want := expectedAlerts(t, f.cfg.Detect, fleet)
	require.Len(t, want, 2, "the spike opens and resolves an alert: %v", want)
	// Starting over at the restart misses it: the test can tell.
	require.Empty(t, expectedAlerts(t, f.cfg.Detect, after))

	p1, stop, done := f.start(t)
	f.produceMessages(t, slices.Clone(before))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(p1.m.readings.WithLabelValues("stored")) == 160 && testutil.ToFloat64(p1.m.checkpointSeries) >= 4
	}, 30*time.Second, 10*time.Millisecond)
	require.Positive(t, testutil.ToFloat64(p1.m.restores.WithLabelValues("restored")), "the partitions were read (empty) before their first reading was scored")
	stop()
	require.NoError(t, <-done)

	p2, _, _ := f.start(t)
	f.produceMessages(t, slices.Clone(after))
	got := f.alertsUntil(t, func(as []sensor.Alert) bool { return len(as) >= 2 })
	require.Equal(t, want, alertKeys(got))
	require.Eventually(t, func() bool { return testutil.ToFloat64(p2.m.restoredSeries.WithLabelValues("restored")) == 4 }, 30*time.Second, 10*time.Millisecond,
		"the four devices' series came from the state topic")
	require.Zero(t, testutil.ToFloat64(p2.m.restoredSeries.WithLabelValues("discarded")))
	require.Eventually(t, func() bool { return testutil.ToFloat64(p2.m.readings.WithLabelValues("stored")) == 80 }, 30*time.Second, 10*time.Millisecond,
		"the first processor's readings were committed at its last checkpoint: none comes again")
}

// A state that another detector version wrote is discarded with a log
// line: the device starts over, and its readings are scored and stored.
func TestStateOfAnotherVersionIsDiscarded(t *testing.T) {
	f := newFixture(t, &testSink{l: newLedger()})
	f.cfg.IncidentsOff = true
	f.cfg.CheckpointInterval = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, f.cfg.Kafka.EnsureTopics(ctx))
	w, err := f.cfg.Kafka.Writer(10, 0)
	require.NoError(t, err)
	defer w.Close()
	old := binary.AppendUvarint([]byte("sfds"), detect.StateVersion+1)
	old = append(old, "a layout this detector does not know"...)
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Topic: f.cfg.Kafka.State(), Key: []byte("dev-1"), Value: old, Headers: []kafka.Header{
		{Key: hdrStateOffset, Value: []byte("3")}, {Key: hdrStatePartition, Value: []byte("0")},
	}}))

	p, err := New(f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	run, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(run) }()
	defer func() { stop(); <-done }()
	f.produce(t, readings(0, 10)...)
	require.Eventually(t, func() bool { return testutil.ToFloat64(p.m.readings.WithLabelValues("stored")) == 10 }, 30*time.Second, 10*time.Millisecond,
		"every reading is stored, none skipped for the discarded state's offset")
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.restoredSeries.WithLabelValues("discarded")))
	require.Zero(t, testutil.ToFloat64(p.m.restoredSeries.WithLabelValues("restored")))
	require.Eventually(t, func() bool { return testutil.ToFloat64(p.m.checkpointSeries) >= 1 }, 30*time.Second, 10*time.Millisecond,
		"its new state is checkpointed")
}

// A second processor joins and leaves while readings flow: partitions move
// to it and back, each move restores the detector state from the
// checkpoints, and the alerts equal one uninterrupted detector's.
func TestCheckpointsAcrossScaleOutAndIn(t *testing.T) {
	f := newFixture(t, &testSink{l: newLedger()})
	f.cfg.Kafka.Partitions = 4
	f.cfg.IncidentsOff = true
	f.cfg.CheckpointInterval = 100 * time.Millisecond
	fleet := fleetReadings(8, 120, func(int, int) bool { return false })
	for i := range fleet { // half the devices spike 5 readings after the first move, half after the second
		if r, _ := sensor.ParseReading(fleet[i].Value); r.Seq == 45 && r.DeviceID[1]%2 == 0 || r.Seq == 85 && r.DeviceID[1]%2 == 1 {
			r.Metrics["temperature"] = 30
			fleet[i].Value = r.AppendJSON(nil)
		}
	}
	want := expectedAlerts(t, f.cfg.Detect, fleet)
	require.Len(t, want, 16, "each device's spike opens and resolves an alert")
	stored := func(ps ...*Processor) float64 {
		n := 0.0
		for _, p := range ps {
			n += testutil.ToFloat64(p.m.readings.WithLabelValues("stored"))
		}
		return n
	}

	p1, _, _ := f.start(t)
	f.produceMessages(t, slices.Clone(fleet[:8*40]))
	require.Eventually(t, func() bool { return stored(p1) == 320 && testutil.ToFloat64(p1.m.checkpointSeries) >= 8 }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a checkpoint after the last batch: its offsets committed

	p2, stop2, done2 := f.start(t)
	for sec := 40; sec < 80; sec++ { // a second at a time, while the group rebalances (about 3 s)
		f.produceMessages(t, slices.Clone(fleet[8*sec:8*(sec+1)]))
		time.Sleep(200 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return stored(p1, p2) >= 640 }, 30*time.Second, 10*time.Millisecond)
	require.Positive(t, stored(p2), "the second processor had a share")
	require.Positive(t, testutil.ToFloat64(p2.m.restoredSeries.WithLabelValues("restored")), "it restored the first one's checkpoints")
	stop2()
	require.NoError(t, <-done2)

	f.produceMessages(t, slices.Clone(fleet[8*80:]))
	got := f.alertsUntil(t, func(as []sensor.Alert) bool { return len(alertKeys(as)) >= len(want) })
	require.Equal(t, want, alertKeys(got))
	require.Positive(t, testutil.ToFloat64(p1.m.stateResets), "the partitions came back to the first processor, whose state for them was stale")
}

// A state topic that cannot be read costs the partition its history, not
// its readings: after three tries the devices start over, the failure is
// counted, and every reading is scored and stored.
func TestUnreadableStateTopicStartsTheDevicesOver(t *testing.T) {
	f := newFixture(t, &testSink{l: newLedger()})
	f.cfg.IncidentsOff = true
	f.cfg.CheckpointInterval = 100 * time.Millisecond
	state := f.cfg.Kafka.State()
	var refused atomic.Int64
	f.cluster.ControlKey(kmsg.ListOffsets.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		for _, tp := range req.(*kmsg.ListOffsetsRequest).Topics {
			if tp.Topic == state {
				refused.Add(1)
				return nil, errors.New("refused by the test"), true
			}
		}
		return nil, nil, false
	})
	p, _, _ := f.start(t)
	f.produce(t, readings(0, 10)...)
	require.Eventually(t, func() bool { return testutil.ToFloat64(p.m.readings.WithLabelValues("stored")) == 10 }, 60*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.restores.WithLabelValues("failed")))
	require.Zero(t, testutil.ToFloat64(p.m.restores.WithLabelValues("restored")))
	require.GreaterOrEqual(t, refused.Load(), int64(3), "three tries")
	require.Equal(t, 1, int(testutil.ToFloat64(p.m.series)), "its series started over and were scored")
}
