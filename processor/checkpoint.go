package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/processor/detect"
)

// Detector checkpoints. Every -processor.checkpoint-interval the consume
// loop encodes the state of each device that sent readings since the last
// checkpoint and writes it to the compacted state topic, keyed by device
// (so a device's state lands in the partition of the same number as its
// readings). Offsets are committed only up to the last checkpoint written:
// after a crash the readings since are consumed again and scored against
// the state the checkpoint holds, which is exactly the state they were
// scored against before. Each record carries the offset of the device's
// last reading folded in; a reading at or below it is stored but not
// scored again. When a partition comes to this processor (at start, or
// back after another processor consumed it) the loop reads the partition's
// states before scoring its first reading.

const (
	hdrStateOffset    = "sensorflow-offset"
	hdrStatePartition = "sensorflow-partition"
)

type devicePos struct {
	site      string
	partition int
	offset    int64
}

type checkpoints struct {
	p     *Processor
	every time.Duration
	last  time.Time
	dirty map[string]devicePos // devices scored since the last checkpoint
	// covered: device → the offset of the last reading its restored state
	// folded in; readings up to it are not scored again.
	covered map[string]int64
}

func newCheckpoints(p *Processor) *checkpoints {
	return &checkpoints{p: p, every: p.cfg.CheckpointInterval, last: time.Now(), dirty: map[string]devicePos{}, covered: map[string]int64{}}
}

// scored records that a device's reading at offset went into its state.
func (c *checkpoints) scored(device, site string, partition int, offset int64) {
	c.dirty[device] = devicePos{site, partition, offset}
}

// skip reports whether a device's reading at offset is already in the
// state restored for it.
func (c *checkpoints) skip(device string, offset int64) bool {
	to, ok := c.covered[device]
	if !ok {
		return false
	}
	if offset <= to {
		return true
	}
	delete(c.covered, device)
	return false
}

// due reports whether a checkpoint is due at now (never without
// checkpoints: c nil).
func (c *checkpoints) due(now time.Time) bool {
	return c != nil && len(c.dirty) > 0 && now.Sub(c.last) >= c.every
}

// deadline is when the next checkpoint falls due (zero: nothing to write,
// or no checkpoints).
func (c *checkpoints) deadline() time.Time {
	if c == nil || len(c.dirty) == 0 {
		return time.Time{}
	}
	return c.last.Add(c.every)
}

// take encodes the state of every device scored since the last checkpoint
// into state-topic messages and starts the next interval.
func (c *checkpoints) take(det *detect.Detector) []kafka.Message {
	c.last = time.Now()
	if len(c.dirty) == 0 {
		return nil
	}
	sites := make(map[string]string, len(c.dirty))
	for dev, pos := range c.dirty {
		sites[dev] = pos.site
	}
	out := make([]kafka.Message, 0, len(c.dirty))
	series, bytes := 0, 0
	det.DeviceStates(sites, func(dev string, st []byte, n int) {
		pos := c.dirty[dev]
		out = append(out, kafka.Message{
			Topic: c.p.cfg.Kafka.State(), Key: []byte(dev), Value: append([]byte(nil), st...),
			Headers: []kafka.Header{
				{Key: hdrStateOffset, Value: strconv.AppendInt(nil, pos.offset, 10)},
				{Key: hdrStatePartition, Value: strconv.AppendInt(nil, int64(pos.partition), 10)},
			},
		})
		series += n
		bytes += len(st)
	})
	clear(c.dirty)
	c.p.m.checkpointSeries.Add(float64(series))
	c.p.m.checkpointBytes.Add(float64(bytes))
	return out
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// restore reads the states of partition's devices from the state topic
// and puts them in det, replacing what det held for those devices (stale,
// when the partition comes back from another processor). Of several
// records of one device the one of the highest offset wins. A state of
// another detector version is discarded with a log line. If the state
// topic cannot be read (three tries of a minute), the devices start over.
// It reports whether the states were read; when ctx ended meanwhile, the
// caller must not score the partition's readings (their states would be
// checkpointed over the good ones).
func (c *checkpoints) restore(ctx context.Context, det *detect.Detector, partition int, stale map[string]bool) bool {
	start := time.Now()
	if n := det.ForgetDevices(stale); n > 0 {
		c.p.m.stateResets.Inc()
	}
	for dev := range stale { // what was held for them is older than the checkpoints
		delete(c.covered, dev)
		delete(c.dirty, dev)
	}
	var states map[string]kafka.Message
	var err error
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		states, err = c.read(rctx, partition)
		cancel()
		if err == nil || ctx.Err() != nil || attempt == 2 {
			break
		}
		c.p.log.Warn("reading detector states failed; trying again", "partition", partition, "err", err)
		time.Sleep(time.Second)
	}
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		c.p.m.restores.WithLabelValues("failed").Inc()
		c.p.log.Error("detector states of the partition could not be read: its series start over", "partition", partition, "err", err)
		return false
	}
	series, discarded := 0, 0
	for dev, m := range states {
		n, err := det.RestoreDevice(dev, m.Value)
		if err != nil {
			discarded++
			if errors.Is(err, detect.ErrStateVersion) {
				c.p.log.Info("detector state of another version discarded: the device starts over", "device", dev, "err", err)
			} else {
				c.p.log.Warn("damaged detector state discarded: the device starts over", "device", dev, "err", err)
			}
			continue
		}
		off, _ := strconv.ParseInt(header(&m, hdrStateOffset), 10, 64)
		c.covered[dev] = off
		delete(c.dirty, dev) // the checkpoint holds this state already
		series += n
	}
	c.p.m.restores.WithLabelValues("restored").Inc()
	c.p.m.restoredSeries.WithLabelValues("restored").Add(float64(series))
	c.p.m.restoredSeries.WithLabelValues("discarded").Add(float64(discarded))
	c.p.log.Info("detector state restored", "partition", partition, "devices", len(states)-discarded, "series", series,
		"discarded", discarded, "took", time.Since(start).Round(time.Millisecond).String())
	return true
}

// read returns the latest state of each device in one partition of the
// state topic, reading it from its first offset to its end.
func (c *checkpoints) read(ctx context.Context, partition int) (map[string]kafka.Message, error) {
	topic := c.p.cfg.Kafka.State()
	cl, err := c.p.cfg.Kafka.Client()
	if err != nil {
		return nil, err
	}
	resp, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return nil, err
	}
	var first, end int64 = -1, -1
	for _, po := range resp.Topics[topic] {
		if po.Partition != partition {
			continue
		}
		if po.Error != nil {
			return nil, po.Error
		}
		first, end = po.FirstOffset, po.LastOffset
	}
	if first < 0 || end < 0 {
		return nil, fmt.Errorf("no offsets for %s partition %d", topic, partition)
	}
	out := map[string]kafka.Message{}
	if end <= first {
		return out, nil
	}
	dialer, err := c.p.cfg.Kafka.Dialer()
	if err != nil {
		return nil, err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.p.cfg.Kafka.BrokerList(), Topic: topic, Partition: partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return nil, err
	}
	best := map[string]int64{}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return nil, err
		}
		if len(m.Value) > 0 && header(&m, hdrStatePartition) == strconv.Itoa(partition) {
			off, err := strconv.ParseInt(header(&m, hdrStateOffset), 10, 64)
			if b, seen := best[string(m.Key)]; err == nil && (!seen || off >= b) {
				best[string(m.Key)] = off
				out[string(m.Key)] = m
			}
		}
		if m.Offset+1 >= end {
			return out, nil
		}
	}
}

// statePartitionsMatch checks that the state topic has as many partitions
// as the readings topic, so a device's state is in the partition of the
// same number as its readings.
func (p *Processor) statePartitionsMatch(ctx context.Context) error {
	cl, err := p.cfg.Kafka.Client()
	if err != nil {
		return err
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{p.cfg.Kafka.ReadingsTopic, p.cfg.Kafka.State()}})
	if err != nil {
		return err
	}
	n := map[string]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		n[t.Name] = len(t.Partitions)
	}
	if n[p.cfg.Kafka.ReadingsTopic] != n[p.cfg.Kafka.State()] {
		return fmt.Errorf("state topic %s has %d partitions, readings topic %s has %d: they must match",
			p.cfg.Kafka.State(), n[p.cfg.Kafka.State()], p.cfg.Kafka.ReadingsTopic, n[p.cfg.Kafka.ReadingsTopic])
	}
	return nil
}
