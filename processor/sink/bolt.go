package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Bolt is the embedded store of the zero-setup demo: one bbolt file holding
// readings (with their anomaly scores), alerts and device sites, so the demo
// keeps its history across restarts. Readings are keyed by time first, then
// device and metric, so a rewrite overwrites (idempotent) and pruning old
// data is a cheap range delete. It is safe for concurrent use.
type Bolt struct {
	db        *bolt.DB
	retention time.Duration
}

var (
	bktReadings = []byte("readings")
	bktAlerts   = []byte("alerts")
	bktDevices  = []byte("devices")
)

// OpenBolt opens (creating) the store at path. Data older than retention is
// pruned by Prune.
func OpenBolt(path string, retention time.Duration) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktReadings, bktAlerts, bktDevices} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initializing store %s: %w", path, err)
	}
	return &Bolt{db: db, retention: retention}, nil
}

// timeKey orders times as unsigned big-endian bytes.
func timeKey(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return b[:]
}

func keyTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])^(1<<63))).UTC()
}

func readingKey(ts time.Time, device, metric string) []byte {
	k := make([]byte, 0, 8+len(device)+1+len(metric))
	k = append(k, timeKey(ts)...)
	k = append(k, device...)
	k = append(k, 0)
	return append(k, metric...)
}

// Write stores b in one transaction.
func (s *Bolt) Write(ctx context.Context, b Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing batch to the store: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rb, ab, db := tx.Bucket(bktReadings), tx.Bucket(bktAlerts), tx.Bucket(bktDevices)
		k := 0
		for i := range b.Readings {
			r := &b.Readings[i]
			if err := db.Put([]byte(r.DeviceID), []byte(r.Site)); err != nil {
				return err
			}
			for _, name := range r.MetricNames() {
				score := math.NaN()
				if k < len(b.Scores) {
					score = b.Scores[k]
				}
				k++
				val := make([]byte, 16) // bbolt keeps values until the transaction ends
				binary.BigEndian.PutUint64(val[:8], math.Float64bits(r.Metrics[name]))
				binary.BigEndian.PutUint64(val[8:], math.Float64bits(score))
				if err := rb.Put(readingKey(r.TS, r.DeviceID, name), val); err != nil {
					return err
				}
			}
		}
		for i := range b.Alerts {
			v, err := json.Marshal(&b.Alerts[i])
			if err != nil {
				return err
			}
			if err := ab.Put([]byte(b.Alerts[i].AlertID), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing batch to the store: %w", err)
	}
	return nil
}

// Values returns a device's metric in [from, to] keyed by Unix nanoseconds.
func (s *Bolt) Values(device, metric string, from, to time.Time) (map[int64]float64, error) {
	out := map[int64]float64{}
	suffix := append(append([]byte(device), 0), metric...)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktReadings).Cursor()
		end := timeKey(to)
		for k, v := c.Seek(timeKey(from)); k != nil && bytes.Compare(k[:8], end) <= 0; k, v = c.Next() {
			if bytes.Equal(k[8:], suffix) {
				out[keyTime(k).UnixNano()] = math.Float64frombits(binary.BigEndian.Uint64(v[:8]))
			}
		}
		return nil
	})
	return out, err
}

// Alerts returns every stored alert (the latest event of each).
func (s *Bolt) Alerts() ([]sensor.Alert, error) {
	var out []sensor.Alert
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktAlerts).ForEach(func(_, v []byte) error {
			var a sensor.Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].TS.Before(out[j].TS) })
	return out, err
}

// Replay feeds the readings since a time, in time order, and then the alerts,
// to fn in batches (used to fill the dashboard after a restart).
func (s *Bolt) Replay(since time.Time, fn func(Batch) error) error {
	sites := map[string]string{}
	var b Batch
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := fn(b)
		b = Batch{}
		return err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		_ = tx.Bucket(bktDevices).ForEach(func(k, v []byte) error { sites[string(k)] = string(v); return nil })
		c := tx.Bucket(bktReadings).Cursor()
		for k, v := c.Seek(timeKey(since)); k != nil; k, v = c.Next() {
			device, metric, ok := bytes.Cut(k[8:], []byte{0})
			if !ok {
				continue
			}
			ts := keyTime(k)
			n := len(b.Readings)
			// Readings of one device at one time are adjacent, metrics sorted.
			if n == 0 || !b.Readings[n-1].TS.Equal(ts) || b.Readings[n-1].DeviceID != string(device) {
				if n >= 5000 {
					if err := flush(); err != nil {
						return err
					}
				}
				b.Readings = append(b.Readings, sensor.Reading{DeviceID: string(device), Site: sites[string(device)], TS: ts, Metrics: map[string]float64{}})
			}
			b.Readings[len(b.Readings)-1].Metrics[string(metric)] = math.Float64frombits(binary.BigEndian.Uint64(v[:8]))
			score := math.Float64frombits(binary.BigEndian.Uint64(v[8:]))
			if math.IsNaN(score) {
				score = -1
			}
			b.Scores = append(b.Scores, score)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	alerts, err := s.Alerts()
	if err != nil {
		return err
	}
	for _, a := range alerts {
		if !a.TS.Before(since) {
			b.Alerts = append(b.Alerts, a)
		}
	}
	return flush()
}

// Prune deletes readings and alerts older than the retention.
func (s *Bolt) Prune(now time.Time) (int, error) {
	cutoff := timeKey(now.Add(-s.retention))
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		// Collect first: deleting under a moving cursor can skip keys.
		var old [][]byte
		c := tx.Bucket(bktReadings).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
			old = append(old, append([]byte(nil), k...))
		}
		for _, k := range old {
			if err := tx.Bucket(bktReadings).Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		old = old[:0]
		_ = tx.Bucket(bktAlerts).ForEach(func(k, v []byte) error {
			var a sensor.Alert
			if json.Unmarshal(v, &a) == nil && a.TS.Before(now.Add(-s.retention)) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range old {
			if err := tx.Bucket(bktAlerts).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// Close closes the file.
func (s *Bolt) Close() error { return s.db.Close() }
