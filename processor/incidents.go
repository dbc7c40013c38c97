package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/batch"
	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/incident"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// groupIncidents runs the incidents stage: it consumes the raw alerts topic
// in its own consumer group (keyed by site, so all of a site's alerts reach
// one member whichever processors hold the readings), groups them
// (incident.Grouper), publishes what users get on the alerts topic, stores
// every decided event in the sinks (grouped device alerts linked to their
// incident) and commits an offset only once everything before it is
// published and stored, and no alert of it is still held.
func (p *Processor) groupIncidents(ctx context.Context) error {
	topic := p.cfg.Kafka.RawAlerts()
	r, err := p.reader(p.cfg.incidentsGroup(), topic, 1000)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := p.cfg.Kafka.Writer(1000, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	kafkax.Warm(ctx, w, p.log, p.cfg.Kafka.AlertsTopic)
	drainCtx, cancelDrain := batch.Drain(ctx, p.cfg.DrainTimeout)
	defer cancelDrain()

	fetched := make(chan kafka.Message, 1000)
	go func() {
		defer close(fetched)
		for {
			m, err := kafkax.Fetch(ctx, r, p.log, "fetching raw alerts from kafka", nil)
			if err != nil {
				return // ctx ended: Fetch retries everything else
			}
			select {
			case fetched <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	st := &incidentStage{p: p, g: incident.New(p.cfg.Incidents), r: r, w: w, topic: topic, done: map[int]int64{}, committed: map[int]int64{},
		toStore: make(chan storeJob, storeQueue)}
	// The storer stores each flush's events and then commits its offsets,
	// in order, while this loop goes on deciding: an alert that arrives
	// meanwhile waits for no store and no commit.
	storerDone := make(chan struct{})
	go func() {
		defer close(storerDone)
		st.store(drainCtx)
	}()
	defer func() {
		close(st.toStore)
		<-storerDone
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	in := make([]kafka.Message, 0, 1000)
	for {
		var out []incident.Out
		var dead []kafka.Message
		select {
		case <-ctx.Done():
			return nil // held alerts stay uncommitted: the partition's next owner reads them again
		case <-tick.C:
			out = st.g.Tick(time.Now(), out)
		case m, ok := <-fetched:
			if !ok {
				return nil
			}
			// Adaptive: take what is waiting, decide at once.
			in = append(in[:0], m)
		more:
			for len(in) < cap(in) {
				select {
				case m, ok := <-fetched:
					if !ok {
						break more
					}
					in = append(in, m)
				default:
					break more
				}
			}
			now := time.Now()
			for i := range in {
				out, dead = st.observe(&in[i], now, out, dead)
			}
		}
		if !st.flush(drainCtx, out, dead) {
			return nil // drain time over at shutdown; nothing held or unstored was committed
		}
		p.m.incidentsOpen.Set(float64(st.g.Open()))
		p.m.alertsHeld.Set(float64(st.g.Held()))
	}
}

// incidentStage is the state of one incidents loop; one goroutine owns it.
type incidentStage struct {
	p     *Processor
	g     *incident.Grouper
	r     *kafka.Reader
	w     *kafka.Writer
	topic string
	// done: per partition, the offset of the last message taken in;
	// committed: the last offset handed to the storer to commit.
	done, committed map[int]int64
	toStore         chan storeJob
	failed          atomic.Bool // the storer gave up (drain time over)
}

// storeJob is what one flush leaves to the storer: events to store, then
// offsets to commit.
type storeJob struct {
	b      sink.Batch
	commit []kafka.Message
}

// store stores and commits the jobs of toStore in order until it is
// closed. After a failed store (ctx ended) it commits nothing more.
func (st *incidentStage) store(ctx context.Context) {
	p := st.p
	for job := range st.toStore {
		if st.failed.Load() {
			continue
		}
		if len(job.b.Alerts) > 0 {
			if err := p.sinks.Write(ctx, job.b); err != nil {
				st.failed.Store(true)
				continue
			}
		}
		if len(job.commit) == 0 {
			continue
		}
		if err := st.r.CommitMessages(ctx, job.commit...); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				st.failed.Store(true)
				continue
			}
			// Decided and stored; after a restart the events are read again
			// and published once more, with the same ids.
			p.log.Warn("committing raw alert offsets failed", "err", err)
		}
	}
}

// observe takes in one message of the raw alerts topic.
func (st *incidentStage) observe(m *kafka.Message, now time.Time, out []incident.Out, dead []kafka.Message) ([]incident.Out, []kafka.Message) {
	st.done[m.Partition] = m.Offset
	for _, h := range m.Headers {
		if h.Key == CensusHeader {
			c, err := parseCensus(m.Value)
			if err != nil {
				return out, append(dead, st.deadLetter(m, err))
			}
			st.g.Census(c, now)
			return out, dead
		}
	}
	a, err := sensor.ParseAlert(m.Value)
	if err != nil {
		return out, append(dead, st.deadLetter(m, err))
	}
	return st.g.Observe(a, incident.Ref{Partition: m.Partition, Offset: m.Offset}, now, out), dead
}

// parseCensus reads a census message, which a foreign producer on the raw
// alerts topic may have written.
func parseCensus(b []byte) (incident.Census, error) {
	var c incident.Census
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("census is not valid JSON: %w", err)
	}
	if err := sensor.ValidateID("site", c.Site); err != nil {
		return c, err
	}
	if c.Devices < 0 {
		return c, fmt.Errorf("census counts %d devices", c.Devices)
	}
	return c, nil
}

func (st *incidentStage) deadLetter(m *kafka.Message, err error) kafka.Message {
	rej := sensor.RejectionOf(err)
	st.p.m.rejected.WithLabelValues(rej.Reason).Inc()
	return kafkax.DeadLetter(st.p.cfg.Kafka.DeadLetterTopic, m.Key, m.Topic, m.Value, rej, m.Time)
}

// flush publishes the decisions, then hands storing them and committing
// what it may to the storer; false once the storer gave up (shutdown).
func (st *incidentStage) flush(ctx context.Context, out []incident.Out, dead []kafka.Message) bool {
	p := st.p
	msgs := dead
	var b sink.Batch
	for i := range out {
		o := &out[i]
		b.Alerts = append(b.Alerts, o.Alert)
		switch {
		case o.Suppressed:
			p.m.grouped.WithLabelValues("grouped").Inc()
			continue
		case o.Alert.DeviceID == incident.SiteDevice:
			p.m.incidents.WithLabelValues(o.Alert.Kind, o.Alert.State).Inc()
			p.log.Info("incident", "site", o.Alert.Site, "kind", o.Alert.Kind, "state", o.Alert.State, "metric", o.Alert.Metric,
				"devices", o.Alert.MemberCount, "grouped", o.Alert.Suppressed, "alert_id", o.Alert.AlertID)
		default:
			p.m.grouped.WithLabelValues("published").Inc()
		}
		v, _ := json.Marshal(&o.Alert)
		msgs = append(msgs, kafka.Message{Topic: p.cfg.Kafka.AlertsTopic, Key: alertKey(&o.Alert), Value: v})
	}
	if len(msgs) > 0 {
		if err := kafkax.WriteAll(ctx, st.w, msgs, p.log, "writing alerts to kafka", nil); err != nil {
			return false
		}
	}
	// Commit below the oldest held alert of each partition.
	oldest := st.g.Oldest()
	var commit []kafka.Message
	for part, off := range st.done {
		if o, ok := oldest[part]; ok {
			off = o - 1
		}
		if c, ok := st.committed[part]; ok && off <= c || off < 0 {
			continue
		}
		commit = append(commit, kafka.Message{Topic: st.topic, Partition: part, Offset: off})
	}
	for _, m := range commit {
		st.committed[m.Partition] = m.Offset
	}
	if len(b.Alerts) > 0 || len(commit) > 0 {
		st.toStore <- storeJob{b: b, commit: commit}
	}
	return !st.failed.Load()
}

// alertKey keys an alert on the alerts topic: the device, or for an
// incident its site.
func alertKey(a *sensor.Alert) []byte {
	if a.DeviceID == incident.SiteDevice {
		return []byte(a.Site)
	}
	return []byte(a.DeviceID)
}
