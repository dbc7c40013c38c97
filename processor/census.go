package processor

import (
	"encoding/json"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/processor/incident"
)

// censusWindow: a device counts towards its site while its last reading is
// at most this much older than the newest reading of its partition.
const censusWindow = 5 * time.Minute

// CensusHeader marks a census message on the raw alerts topic (value
// "census"); alert events carry no such header.
const CensusHeader = "sensorflow-kind"

// census counts the devices of each site per partition of the readings
// topic, so the incidents stage knows how large a site is (its devices are
// spread over the partitions, and so over the processors). One goroutine
// uses it: the consume loop.
type census struct {
	every  time.Duration
	last   time.Time          // wall clock of the last full report
	grown  map[censusKey]bool // sites whose count grew since they were last reported
	seen   map[censusKey]map[string]time.Time
	newest map[int]time.Time // newest reading time per partition
}

type censusKey struct {
	partition int
	site      string
}

func newCensus(every time.Duration) *census {
	return &census{every: every, seen: map[censusKey]map[string]time.Time{}, newest: map[int]time.Time{}, grown: map[censusKey]bool{}}
}

// devices returns the devices seen on partition (in the last censusWindow
// or so).
func (c *census) devices(partition int) map[string]bool {
	out := map[string]bool{}
	for k, devs := range c.seen {
		if k.partition == partition {
			for d := range devs {
				out[d] = true
			}
		}
	}
	return out
}

// see records a reading of device on partition.
func (c *census) see(partition int, site, device string, ts time.Time) {
	k := censusKey{partition, site}
	m := c.seen[k]
	if m == nil {
		m = map[string]time.Time{}
		c.seen[k] = m
	}
	if last, ok := m[device]; !ok {
		c.grown[k] = true
		m[device] = ts
	} else if ts.After(last) {
		m[device] = ts
	}
	if ts.After(c.newest[partition]) {
		c.newest[partition] = ts
	}
}

// report returns one census message per site and partition seen once
// every c.every (wall clock), forgetting the devices silent for longer than
// censusWindow, and in between one for each whose count grew (at start-up,
// or when a partition moves here), so a site's size is known before its
// first alerts are grouped.
func (c *census) report(now time.Time, topic string) []kafka.Message {
	full := now.Sub(c.last) >= c.every
	if !full && len(c.grown) == 0 {
		return nil
	}
	var out []kafka.Message
	for k, devs := range c.seen {
		if !full && !c.grown[k] {
			continue
		}
		newest := c.newest[k.partition]
		for d, ts := range devs {
			if newest.Sub(ts) > censusWindow {
				delete(devs, d)
			}
		}
		if len(devs) == 0 {
			delete(c.seen, k)
		}
		v, _ := json.Marshal(incident.Census{Site: k.site, Partition: k.partition, Devices: len(devs), TS: newest})
		out = append(out, kafka.Message{Topic: topic, Key: []byte(k.site), Value: v,
			Headers: []kafka.Header{{Key: CensusHeader, Value: []byte("census")}}})
	}
	if full {
		c.last = now
	}
	clear(c.grown)
	return out
}
