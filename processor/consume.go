package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/batch"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// consume runs the fetch → detect → store → publish → commit loop.
func (p *Processor) consume(ctx context.Context) error {
	r, err := p.reader(p.cfg.GroupID, p.cfg.Kafka.ReadingsTopic, p.cfg.BatchSize)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := p.cfg.Kafka.Writer(1000, 0) // each batch's alerts go at once
	if err != nil {
		return err
	}
	defer w.Close()
	kafkax.Warm(ctx, w, p.log, p.cfg.Kafka.RawAlerts(), p.cfg.Kafka.AlertsTopic, p.cfg.Kafka.DeadLetterTopic)
	var ck *checkpoints
	var stateW *kafka.Writer
	if p.cfg.checkpointing() {
		if err := p.statePartitionsMatch(ctx); err != nil {
			p.log.Error("detector checkpoints off: series start over after a restart or rebalance", "err", err)
		} else {
			ck = newCheckpoints(p)
			if stateW, err = p.cfg.Kafka.Writer(1000, 0); err != nil {
				return err
			}
			defer stateW.Close()
		}
	}

	// Fetching stops with ctx; storing and committing the batch in hand may
	// go on for DrainTimeout after it.
	drainCtx, cancelDrain := batch.Drain(ctx, p.cfg.DrainTimeout)
	defer cancelDrain()

	fetched := make(chan kafka.Message, p.cfg.BatchSize)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(fetched)
		for {
			m, err := kafkax.Fetch(ctx, r, p.log, "fetching from kafka", func(error) { p.ready.Store(false) })
			if err != nil {
				if ctx.Err() == nil {
					fetchErr <- fmt.Errorf("fetching from kafka: %w", err)
				}
				return
			}
			p.ready.Store(true)
			select {
			case fetched <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	p.ready.Store(true)
	defer p.ready.Store(false)
	p.log.Info("consuming", "topic", p.cfg.Kafka.ReadingsTopic, "group", p.cfg.GroupID)

	// Four stages: this loop decodes and runs detection on each batch as
	// soon as it is fetched; the publisher writes its alerts and dead
	// letters at once (an alert waits for no store); the storer writes the
	// batches to the sinks, all those that waited meanwhile in one write;
	// the committer commits what was stored. Detection runs up to
	// storeQueue batches ahead of the sinks, so a slow store delays no
	// alert, and a busy sink gets fewer, larger writes. Batches are
	// published, stored and committed in fetch order; an offset is
	// committed only after its batch is stored and published, and, with
	// checkpoints, only once a checkpoint at or after it is written.
	det := detect.New(p.cfg.Detect)
	cen := newCensus(p.cfg.CensusInterval)
	lastOffset := map[int]int64{}
	ready := make(chan *work, storeQueue)
	toPublish := make(chan *work, storeQueue+2)
	toCommit := make(chan []kafka.Message, 1)
	stored := make(chan struct{})
	committed := make(chan struct{})
	publishedAll := make(chan struct{})
	go func() {
		defer close(publishedAll)
		for wk := range toPublish {
			var err error
			if len(wk.out) > 0 {
				err = kafkax.WriteAll(drainCtx, w, wk.out, p.log, "writing alerts to kafka", nil)
			}
			wk.published <- err
		}
	}()
	go func() {
		defer close(committed)
		for msgs := range toCommit {
			if err := r.CommitMessages(drainCtx, msgs...); err != nil {
				// The batch is stored; after a rebalance or restart it is
				// redelivered and rewritten idempotently.
				p.m.batches.WithLabelValues("commit_error").Inc()
				p.log.Warn("committing offsets failed", "messages", len(msgs), "err", err)
				continue
			}
			p.m.batches.WithLabelValues("committed").Inc()
		}
	}()
	go func() {
		defer close(stored)
		defer func() {
			close(toCommit)
			<-committed
		}()
		pending := map[int]kafka.Message{} // the last message of each partition not committed yet
		// The batches that wait go to the sinks together, up to 4 ×
		// -processor.batch-size readings in one write; with
		// -processor.store-linger the storer waits that long after the
		// first for more. It ends when ready is closed and empty.
		gather := batch.NewSizedCollector(ready, batch.Policy{Max: 4 * p.cfg.BatchSize, Linger: p.cfg.StoreLinger},
			func(wk *work) int { return len(wk.b.Readings) })
		var group []*work
		for {
			var ok bool
			if group, ok = gather.Next(context.Background(), group); !ok {
				return
			}
			if err := p.finish(drainCtx, group); err != nil {
				p.log.Warn("batches left uncommitted at shutdown", "batches", len(group), "err", err)
				return
			}
			for _, wk := range group {
				if ck == nil {
					toCommit <- wk.msgs
					continue
				}
				for _, m := range wk.msgs {
					pending[m.Partition] = m
				}
				if !wk.checkpoint {
					continue
				}
				if len(wk.state) > 0 {
					if err := kafkax.WriteAll(drainCtx, stateW, wk.state, p.log, "writing detector checkpoint to kafka", nil); err != nil {
						p.m.checkpoints.WithLabelValues("error").Inc()
						p.log.Warn("checkpoint not written: offsets left uncommitted", "devices", len(wk.state), "err", err)
						return
					}
				}
				p.m.checkpoints.WithLabelValues("written").Inc()
				if len(pending) > 0 {
					msgs := make([]kafka.Message, 0, len(pending))
					for _, m := range pending {
						msgs = append(msgs, m)
					}
					clear(pending)
					toCommit <- msgs
				}
			}
		}
	}()
	defer func() {
		close(toPublish)
		close(ready)
		<-stored
		<-publishedAll
	}()
	c := batch.NewCollector(fetched, p.cfg.batchPolicy())
	send := func(wk *work) bool {
		toPublish <- wk // never blocks long: it holds more than ready, and the storer waits for each batch's publishing
		select {
		case ready <- wk:
			return true
		case <-stored:
			return false // the storer gave up at shutdown
		}
	}
	checkpoint := func() *work { // a checkpoint without readings
		return &work{published: make(chan error, 1), state: ck.take(det), checkpoint: true}
	}
	for {
		// With checkpoints, waiting for readings ends when one falls due.
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if dl := ck.deadline(); !dl.IsZero() {
			nctx, cancel = context.WithDeadline(ctx, dl)
		}
		msgs, ok := c.Next(nctx, c.Buf())
		cancel()
		if !ok {
			if ctx.Err() == nil && nctx.Err() != nil {
				if !send(checkpoint()) {
					return nil
				}
				continue
			}
			select {
			case err := <-fetchErr:
				return err
			default:
			}
			if ck != nil {
				send(checkpoint()) // at shutdown: the state of everything scored, and its offsets
			}
			return nil
		}
		wk := p.prepare(ctx, det, cen, ck, lastOffset, msgs)
		if ck.due(time.Now()) {
			wk.state, wk.checkpoint = ck.take(det), true
		}
		p.m.series.Set(float64(det.Series()))
		p.m.openAlerts.Set(float64(det.OpenAlerts()))
		if !send(wk) {
			return nil
		}
	}
}

// reader returns a member of a consumer group on topic that fetches as
// soon as a message is there and prefetches up to queue messages.
func (p *Processor) reader(group, topic string, queue int) (*kafka.Reader, error) {
	dialer, err := p.cfg.Kafka.Dialer()
	if err != nil {
		return nil, err
	}
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        p.cfg.Kafka.BrokerList(),
		GroupID:        group,
		Topic:          topic,
		Dialer:         dialer,
		StartOffset:    kafka.FirstOffset,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        100 * time.Millisecond, // idle polls only: a fetch returns as soon as a message is there
		QueueCapacity:  queue,
		ReadBackoffMin: 100 * time.Millisecond,
		ReadBackoffMax: 2 * time.Second,
		// A crashed member's partitions wait this long for a new owner.
		SessionTimeout:    p.cfg.Kafka.SessionTimeout,
		HeartbeatInterval: min(3*time.Second, p.cfg.Kafka.SessionTimeout/3),
	}), nil
}

// work is one batch on its way from detection to the commit.
type work struct {
	msgs      []kafka.Message
	b         sink.Batch
	out       []kafka.Message // alerts and dead letters
	published chan error      // the publisher's result for out
	// checkpoint: the detector state after this batch, written to the
	// state topic once the batch is stored; offsets up to here are then
	// committed.
	state      []kafka.Message
	checkpoint bool
}

// prepare decodes a batch and runs detection over it. With the incidents
// stage on, alerts go to the raw alerts topic keyed by site, with the
// census when one is due, and the stage stores them; otherwise they go to
// the alerts topic and into the sinks with the batch. lastOffset holds the
// offset of the last message taken from each partition: a message at or
// below it was scored already (a rebalance gave the partition back from
// its last commit) and is skipped. A partition seen for the first time, or
// one whose next message lies beyond the next offset (another processor
// consumed it meanwhile), gets its devices' states from the checkpoints
// (ck) before its first reading is scored; without checkpoints the
// detector forgets the partition's devices rather than score their
// readings against older state. A reading that a restored state already
// folded in is stored and scored already, and skipped too.
func (p *Processor) prepare(ctx context.Context, det *detect.Detector, cen *census, ck *checkpoints, lastOffset map[int]int64, batch []kafka.Message) *work {
	wk := &work{msgs: batch, published: make(chan error, 1)}
	b := &wk.b
	b.Readings = make([]sensor.Reading, 0, len(batch))
	// Lag per partition at its last message of the batch, set once per
	// partition rather than once per reading.
	lag := map[int]int64{}
	skipped, covered := 0, 0
	defer func() {
		if skipped > 0 {
			p.log.Info("readings redelivered after a rebalance were scored already: not scored again", "readings", skipped)
		}
		if covered > 0 {
			p.log.Info("readings redelivered after a restart or rebalance are in the restored detector state, stored already: skipped", "readings", covered)
		}
		for part, n := range lag {
			p.m.lag.WithLabelValues(strconv.Itoa(part)).Set(float64(n))
		}
	}()
	for i := range batch {
		m := &batch[i]
		lag[m.Partition] = m.HighWaterMark - m.Offset - 1
		if last, ok := lastOffset[m.Partition]; ok {
			if m.Offset <= last {
				// A rebalance handed the partition back from its last
				// commit: this reading is scored already, and on its way
				// to the sinks in an earlier batch.
				skipped++
				continue
			}
			if m.Offset != last+1 {
				if ck != nil {
					p.log.Info("partition consumed elsewhere meanwhile: restoring its detector state", "partition", m.Partition,
						"after_offset", last, "offset", m.Offset)
					if !ck.restore(ctx, det, m.Partition, cen.devices(m.Partition)) && ctx.Err() != nil {
						wk.msgs = batch[:i] // shutting down: the rest is neither scored nor committed
						break
					}
				} else if n := det.ForgetDevices(cen.devices(m.Partition)); n > 0 {
					p.m.stateResets.Inc()
					p.log.Info("partition consumed elsewhere meanwhile: its series start over", "partition", m.Partition,
						"after_offset", last, "offset", m.Offset, "series", n)
				}
			}
		} else if ck != nil && !ck.restore(ctx, det, m.Partition, nil) && ctx.Err() != nil {
			wk.msgs = batch[:i] // shutting down: the rest is neither scored nor committed
			break
		}
		lastOffset[m.Partition] = m.Offset
		r, err := sensor.ParseReading(m.Value)
		if err != nil {
			p.m.readings.WithLabelValues("rejected").Inc()
			wk.out = append(wk.out, p.deadLetter(m, err))
			continue
		}
		cen.see(m.Partition, r.Site, r.DeviceID, r.TS)
		if ck != nil && ck.skip(r.DeviceID, m.Offset) {
			// Scored and stored before the checkpoint that holds its state.
			covered++
			continue
		}
		b.Readings = append(b.Readings, r)
		b.Alerts, b.Scores = det.Observe(&b.Readings[len(b.Readings)-1], b.Alerts, b.Scores)
		if ck != nil {
			ck.scored(r.DeviceID, r.Site, m.Partition, m.Offset)
		}
	}
	incidents := !p.cfg.IncidentsOff
	if incidents { // the census first: the sizes of the sites, then their alerts
		wk.out = append(wk.out, cen.report(time.Now(), p.cfg.Kafka.RawAlerts())...)
	}
	for i := range b.Alerts {
		a := &b.Alerts[i]
		v, _ := json.Marshal(a)
		if incidents {
			wk.out = append(wk.out, kafka.Message{Topic: p.cfg.Kafka.RawAlerts(), Key: []byte(a.Site), Value: v})
		} else {
			wk.out = append(wk.out, kafka.Message{Topic: p.cfg.Kafka.AlertsTopic, Key: []byte(a.DeviceID), Value: v})
		}
	}
	return wk
}

// storeQueue is how many detected batches may wait for the sinks.
const storeQueue = 16

// finish stores prepared batches in one sink write and waits until their
// alerts and dead letters are published too. It returns only when
// everything is durable, or with ctx's error; the offsets are committed
// after that. (If the process dies in between, the batches are
// redelivered and their alert events published again, with the same ids.)
func (p *Processor) finish(ctx context.Context, group []*work) error {
	b := group[0].b
	if len(group) > 1 {
		b = sink.Batch{}
		for _, wk := range group {
			b.Readings = append(b.Readings, wk.b.Readings...)
			b.Alerts = append(b.Alerts, wk.b.Alerts...)
			b.Scores = append(b.Scores, wk.b.Scores...)
		}
	}
	if !p.cfg.IncidentsOff {
		b.Alerts = nil // the incidents stage stores them, once grouped
	}
	if len(b.Readings) > 0 || len(b.Alerts) > 0 {
		if err := p.sinks.Write(ctx, b); err != nil {
			return err
		}
	}
	for _, wk := range group {
		select {
		case err := <-wk.published:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		for i := range wk.b.Alerts {
			p.m.alerts.WithLabelValues(wk.b.Alerts[i].State).Inc()
		}
	}
	p.m.readings.WithLabelValues("stored").Add(float64(len(b.Readings)))
	return nil
}

// deadLetter wraps a message the processor cannot read. The bridge only
// writes valid readings, so this catches foreign producers on the topic.
func (p *Processor) deadLetter(m *kafka.Message, err error) kafka.Message {
	rej := sensor.RejectionOf(err)
	p.m.rejected.WithLabelValues(rej.Reason).Inc()
	return kafkax.DeadLetter(p.cfg.Kafka.DeadLetterTopic, m.Key, m.Topic, m.Value, rej, m.Time)
}
