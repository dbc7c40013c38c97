package processor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// The processor's guarantees, each proved without servers on the embedded
// Kafka-protocol broker: offsets are committed only after the sinks stored
// their batch, in order; a poison message goes to the dead letters and the
// partition moves on; a shutdown stores and commits the batch in hand.
// The readings topic has one partition, so a reading's seq is its offset.

// ledger records what the sink stored and what the processor committed, and
// every commit that came before its readings were stored.
type ledger struct {
	mu         sync.Mutex
	stored     []int64 // seqs, in the order the sink got them
	storedSet  map[int64]bool
	commits    []int64
	violations []string
	poison     map[int64]bool // seqs that are never stored
	alerts     []sensor.Alert
}

func (l *ledger) alertsSnapshot() []sensor.Alert {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.alerts)
}

func newLedger() *ledger { return &ledger{storedSet: map[int64]bool{}, poison: map[int64]bool{}} }

func (l *ledger) store(b sink.Batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alerts = append(l.alerts, b.Alerts...)
	if len(b.Readings) == 0 {
		return // alerts the incidents stage stores
	}
	for _, r := range b.Readings {
		l.stored = append(l.stored, r.Seq)
		l.storedSet[r.Seq] = true
	}
}

// commit records a committed offset: every reading before it must be stored.
func (l *ledger) commit(offset int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for seq := range offset {
		if !l.storedSet[seq] && !l.poison[seq] {
			l.violations = append(l.violations, fmt.Sprintf("offset %d committed before reading %d was stored", offset, seq))
			break
		}
	}
	if n := len(l.commits); n > 0 && offset < l.commits[n-1] {
		l.violations = append(l.violations, fmt.Sprintf("offset %d committed after %d", offset, l.commits[n-1]))
	}
	l.commits = append(l.commits, offset)
}

func (l *ledger) lastCommit() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.commits) == 0 {
		return -1
	}
	return l.commits[len(l.commits)-1]
}

func (l *ledger) snapshot() (stored, commits []int64, violations []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.stored), slices.Clone(l.commits), slices.Clone(l.violations)
}

// testSink stores into a ledger; it can fail, slow down, or hold its first
// write until released.
type testSink struct {
	l        *ledger
	fail     atomic.Bool
	attempts atomic.Int64
	delay    time.Duration
	hold     chan struct{} // when set, the first write waits for it to close
	entered  chan struct{} // closed when the held write began
	once     sync.Once
}

func (s *testSink) Write(ctx context.Context, b sink.Batch) error {
	s.attempts.Add(1)
	if s.hold != nil {
		s.once.Do(func() {
			close(s.entered)
			<-s.hold
		})
	}
	if err := ctx.Err(); err != nil {
		return err // as a real sink's request would fail
	}
	if s.fail.Load() {
		return errors.New("sink down")
	}
	time.Sleep(s.delay)
	s.l.store(b)
	return nil
}

func (s *testSink) Close() error { return nil }

type fixture struct {
	cluster *kfake.Cluster
	cfg     Config
	ledger  *ledger
}

func newFixture(t *testing.T, s *testSink) *fixture {
	cluster, brokers := testenv.EmbeddedKafka(t)
	f := &fixture{cluster: cluster, ledger: s.l}
	fs := flag.NewFlagSet("", flag.PanicOnError)
	f.cfg.RegisterFlags(fs)
	f.cfg.Kafka.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	id := testenv.Unique("proc")
	f.cfg.Kafka.Brokers = brokers
	f.cfg.Kafka.ReadingsTopic, f.cfg.Kafka.AlertsTopic, f.cfg.Kafka.DeadLetterTopic = id+".readings", id+".alerts", id+".deadletter"
	f.cfg.Kafka.Partitions = 1
	f.cfg.GroupID = id
	f.cfg.BatchSize, f.cfg.Linger = 20, 0 // adaptive, the default
	f.cfg.Sinks = []sink.Spec{sink.Fixed("test", s)}
	topic, group := f.cfg.Kafka.ReadingsTopic, f.cfg.GroupID
	cluster.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		if r.Group == group {
			for _, tp := range r.Topics {
				for _, p := range tp.Partitions {
					if tp.Topic == topic {
						f.ledger.commit(p.Offset)
					}
				}
			}
		}
		return nil, nil, false // observe only
	})
	return f
}

// start runs the processor until the test ends or stop is called; done
// yields Run's error.
func (f *fixture) start(t *testing.T) (p *Processor, stop context.CancelFunc, done <-chan error) {
	p, err := New(f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		ch <- p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Error("processor did not stop")
		}
	})
	require.Eventually(t, func() bool { return p.Ready() == nil }, 20*time.Second, 10*time.Millisecond)
	return p, cancel, ch
}

// produce writes values to the readings topic, in order, keyed by device.
func (f *fixture) produce(t *testing.T, values ...[]byte) {
	w, err := f.cfg.Kafka.Writer(1000, time.Millisecond)
	require.NoError(t, err)
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Topic: f.cfg.Kafka.ReadingsTopic, Key: []byte("dev-1"), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, msgs...))
}

// readings returns n valid readings with seqs from..from+n-1.
func readings(from, n int) [][]byte {
	ts := time.Now().Add(-time.Hour).UTC()
	out := make([][]byte, n)
	for i := range out {
		seq := from + i
		r := sensor.Reading{DeviceID: "dev-1", Site: "site-1", TS: ts.Add(time.Duration(seq) * time.Second), Seq: int64(seq),
			Metrics: map[string]float64{"temperature": 20 + float64(seq%7)/10}}
		out[i] = r.AppendJSON(nil)
	}
	return out
}

func seqs(from, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(from + i)
	}
	return out
}

func requireCommitted(t *testing.T, l *ledger, offset int64) {
	t.Helper()
	require.Eventually(t, func() bool { return l.lastCommit() == offset }, 30*time.Second, 10*time.Millisecond,
		"offset %d never committed (last %d)", offset, l.lastCommit())
}

func TestFailingSinkHoldsBackTheCommit(t *testing.T) {
	s := &testSink{l: newLedger()}
	s.fail.Store(true)
	f := newFixture(t, s)
	f.start(t)
	f.produce(t, readings(0, 100)...)
	// Retries back off from 100 ms: four attempts take about half a second.
	require.Eventually(t, func() bool { return s.attempts.Load() >= 4 }, 20*time.Second, 10*time.Millisecond)
	_, commits, _ := f.ledger.snapshot()
	require.Empty(t, commits, "nothing may be committed while the sink fails")
	s.fail.Store(false)
	requireCommitted(t, f.ledger, 100)
	stored, _, violations := f.ledger.snapshot()
	require.Empty(t, violations)
	require.Equal(t, seqs(0, 100), stored)
}

func TestCommitsInOrderAcrossOverlappingBatches(t *testing.T) {
	// Batches of 20 with a slow sink: detection, storing and committing
	// overlap across about 50 batches.
	s := &testSink{l: newLedger(), delay: 3 * time.Millisecond}
	f := newFixture(t, s)
	f.cfg.CheckpointInterval = 0 // commits every batch (checkpoint_test.go: at checkpoints)
	f.start(t)
	for from := 0; from < 1000; from += 250 {
		f.produce(t, readings(from, 250)...)
	}
	requireCommitted(t, f.ledger, 1000)
	stored, commits, violations := f.ledger.snapshot()
	require.Empty(t, violations)
	require.Equal(t, seqs(0, 1000), stored, "each reading stored once, in order")
	require.Greater(t, len(commits), 5, "one commit per batch")
	require.True(t, slices.IsSorted(commits))
}

func TestPoisonMessageGoesToTheDeadLettersAndThePartitionMovesOn(t *testing.T) {
	s := &testSink{l: newLedger()}
	s.l.poison[1] = true
	f := newFixture(t, s)
	p, _, _ := f.start(t)
	good := readings(0, 3)
	poison := []byte(`{"device_id":"dev-1","metrics":`)
	f.produce(t, good[0], poison, good[2])
	requireCommitted(t, f.ledger, 3)
	stored, _, violations := f.ledger.snapshot()
	require.Empty(t, violations)
	require.Equal(t, []int64{0, 2}, stored)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.cfg.Kafka.BrokerList(), Topic: f.cfg.Kafka.DeadLetterTopic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, poison, m.Value)
	require.Equal(t, "dev-1", string(m.Key))
	h := kafkax.HeaderMap(m)
	require.Equal(t, sensor.ReasonInvalidJSON, h[kafkax.HeaderReason])
	require.NotEmpty(t, h[kafkax.HeaderDetail])
	require.Equal(t, f.cfg.Kafka.ReadingsTopic, h[kafkax.HeaderSourceTopic])
	require.Equal(t, float64(1), testutil.ToFloat64(p.m.rejected.WithLabelValues(sensor.ReasonInvalidJSON)))
}

func TestShutdownStoresAndCommitsTheBatchInHand(t *testing.T) {
	s := &testSink{l: newLedger(), hold: make(chan struct{}), entered: make(chan struct{})}
	f := newFixture(t, s)
	_, stop, done := f.start(t)
	f.produce(t, readings(0, 10)...)
	select {
	case <-s.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the sink never got the batch")
	}
	stop() // SIGTERM while the batch is in the sink
	select {
	case err := <-done:
		t.Fatalf("Run returned with the batch in hand: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(s.hold)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
	// Adaptive batching may have split the ten readings: the batch in the
	// sink at the signal (and any already prepared behind it) is stored
	// and committed; what was still unfetched is left to the next run.
	stored, commits, violations := f.ledger.snapshot()
	require.Empty(t, violations)
	require.NotEmpty(t, stored)
	require.Equal(t, seqs(0, len(stored)), stored)
	require.NotEmpty(t, commits)
	require.Equal(t, int64(len(stored)), commits[len(commits)-1], "the batch in hand is committed before Run returns")
}

// An alert goes out as soon as its reading is scored: it waits for no
// store, even with several batches queued behind a held one. The offsets
// still wait for both, and the batches that waited go to the sink in one
// write.
func TestAlertsDoNotWaitForTheStores(t *testing.T) {
	s := &testSink{l: newLedger(), hold: make(chan struct{}), entered: make(chan struct{})}
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(s.hold) }) })
	f := newFixture(t, s)
	// Twelve batches of five; the first is held in the sink, the spike is
	// in the eleventh.
	f.cfg.BatchSize, f.cfg.Linger = 5, 500*time.Millisecond
	f.start(t)
	values := readings(0, 60)
	spike := sensor.Reading{DeviceID: "dev-1", Site: "site-1", TS: time.Now().Add(-time.Hour).UTC().Add(50 * time.Second), Seq: 50,
		Metrics: map[string]float64{"temperature": 500}}
	values[50] = spike.AppendJSON(nil)
	f.produce(t, values...)
	<-s.entered // the first batch is held in the sink

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.cfg.Kafka.BrokerList(), Topic: f.cfg.Kafka.AlertsTopic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	require.NoError(t, err, "the alert is published while the store is held")
	a, err := sensor.ParseAlert(m.Value)
	require.NoError(t, err)
	require.Equal(t, sensor.StateOpen, a.State)
	_, commits, _ := f.ledger.snapshot()
	require.Empty(t, commits, "nothing committed while a store is pending")
	release.Do(func() { close(s.hold) })
	requireCommitted(t, f.ledger, 60)
	stored, _, violations := f.ledger.snapshot()
	require.Empty(t, violations)
	require.Equal(t, seqs(0, 60), stored)
	require.Less(t, s.attempts.Load(), int64(12), "the batches that waited are stored together")
}

// With -processor.store-linger the storer waits for more scored batches
// before it writes: batches that arrive within it go to the sink in one
// write, in order, and are committed after it.
func TestStoreLingerGathersBatches(t *testing.T) {
	s := &testSink{l: newLedger()}
	f := newFixture(t, s)
	f.cfg.BatchSize, f.cfg.StoreLinger, f.cfg.IncidentsOff = 5, 3*time.Second, true
	f.start(t)
	values := readings(0, 30)
	for i := 0; i < len(values); i += 5 {
		f.produce(t, values[i:i+5]...) // six batches, one after the other
		time.Sleep(20 * time.Millisecond)
	}
	requireCommitted(t, f.ledger, 30)
	stored, _, violations := f.ledger.snapshot()
	require.Empty(t, violations)
	require.Equal(t, seqs(0, 30), stored)
	require.LessOrEqual(t, s.attempts.Load(), int64(2), "six batches within the linger, one or two writes")
}

func TestConfigRejectsASinkWithoutOpen(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("", flag.PanicOnError)
	c.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	c.Sinks = []sink.Spec{{Name: "broken"}}
	require.ErrorContains(t, c.Validate(), "a sink without a name or an Open")
	c.Sinks = []sink.Spec{sink.Fixed("ok", &testSink{l: newLedger()})}
	require.NoError(t, c.Validate())
}
