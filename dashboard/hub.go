// Package dashboard serves Sensorflow's live web dashboard: a fleet view,
// a page per device with charts of every metric and its anomaly score, and
// a live alert feed (server-sent events). The Hub keeps a bounded window of
// recent data in memory; it is fed as a sink.Sink by the processor, so the
// demo and a production processor serve the same page. Assets are embedded:
// nothing is fetched from the internet.
package dashboard

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// Point is one value of a series with its anomaly score.
type Point struct {
	T int64   `json:"t"` // Unix milliseconds
	V float64 `json:"v"`
	S float64 `json:"s"` // anomaly score, -1 when unknown
}

type series struct {
	pts  []Point // ring
	next int
	full bool
}

func (s *series) add(p Point, keep int) {
	if len(s.pts) < keep {
		s.pts = append(s.pts, p)
		return
	}
	s.pts[s.next] = p
	s.next = (s.next + 1) % keep
	s.full = true
}

func (s *series) points() []Point {
	if !s.full {
		return append([]Point(nil), s.pts...)
	}
	return append(append([]Point(nil), s.pts[s.next:]...), s.pts[:s.next]...)
}

type device struct {
	site     string
	last     time.Time
	metrics  map[string]*series
	maxScore float64 // highest score of the latest reading
}

// DeviceSummary is one row of the fleet view.
type DeviceSummary struct {
	DeviceID   string    `json:"device_id"`
	Site       string    `json:"site"`
	LastSeen   time.Time `json:"last_seen"`
	Metrics    []string  `json:"metrics"`
	OpenAlerts int       `json:"open_alerts"`
	Score      float64   `json:"score"`
}

// Fleet is the fleet view.
type Fleet struct {
	Devices        int             `json:"devices"`
	ReadingsPerSec float64         `json:"readings_per_sec"`
	Readings       int64           `json:"readings"`
	OpenWarning    int             `json:"open_warning"`
	OpenCritical   int             `json:"open_critical"`
	AlertsTotal    int64           `json:"alerts_total"`
	Top            []DeviceSummary `json:"top"`
}

// Hub holds the recent data the dashboard shows. It implements sink.Sink;
// all methods are safe for concurrent use.
type Hub struct {
	keep, maxSeries, maxAlerts int

	mu       sync.Mutex
	devices  map[string]*device
	nseries  int
	alerts   []sensor.Alert // newest last
	open     map[string]sensor.Alert
	readings int64
	nalerts  int64
	rate     rateWindow
	subs     map[chan []byte]struct{}
}

// NewHub keeps keep points per series, at most maxSeries series and the
// last 500 alerts.
func NewHub(keep, maxSeries int) *Hub {
	return &Hub{keep: keep, maxSeries: maxSeries, maxAlerts: 500, devices: map[string]*device{},
		open: map[string]sensor.Alert{}, subs: map[chan []byte]struct{}{}}
}

// Write adds a batch to the live view and pushes its alerts to subscribers.
func (h *Hub) Write(_ context.Context, b sink.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := 0
	for i := range b.Readings {
		r := &b.Readings[i]
		d := h.devices[r.DeviceID]
		if d == nil {
			d = &device{metrics: map[string]*series{}}
			h.devices[r.DeviceID] = d
		}
		d.site = r.Site
		if r.TS.After(d.last) {
			d.last = r.TS
			d.maxScore = 0
		}
		for _, name := range r.MetricNames() {
			score := -1.0
			if k < len(b.Scores) {
				score = b.Scores[k]
			}
			k++
			if score > d.maxScore && r.TS.Equal(d.last) {
				d.maxScore = score
			}
			s := d.metrics[name]
			if s == nil {
				if h.nseries >= h.maxSeries {
					continue
				}
				s = &series{}
				d.metrics[name] = s
				h.nseries++
			}
			s.add(Point{T: r.TS.UnixMilli(), V: r.Metrics[name], S: score}, h.keep)
		}
	}
	h.readings += int64(len(b.Readings))
	h.rate.add(time.Now(), len(b.Readings))
	for _, a := range b.Alerts {
		h.addAlert(a)
	}
	return nil
}

func (h *Hub) addAlert(a sensor.Alert) {
	h.nalerts++
	if a.State == sensor.StateOpen {
		h.open[a.AlertID] = a
	} else {
		delete(h.open, a.AlertID)
	}
	h.alerts = append(h.alerts, a)
	if len(h.alerts) > h.maxAlerts {
		h.alerts = append(h.alerts[:0], h.alerts[len(h.alerts)-h.maxAlerts:]...)
	}
	msg, _ := json.Marshal(a)
	for ch := range h.subs {
		select {
		case ch <- msg:
		default: // a slow browser misses an event rather than stalling the pipeline
		}
	}
}

// Close implements sink.Sink.
func (h *Hub) Close() error { return nil }

// Fleet returns the fleet view with the n most anomalous devices.
func (h *Hub) Fleet(n int) Fleet {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := Fleet{Devices: len(h.devices), ReadingsPerSec: math.Round(h.rate.perSecond(time.Now())*10) / 10,
		Readings: h.readings, AlertsTotal: h.nalerts}
	openBy := map[string]int{}
	for _, a := range h.open {
		openBy[a.DeviceID]++
		if a.Severity == sensor.SeverityCritical {
			f.OpenCritical++
		} else {
			f.OpenWarning++
		}
	}
	for id, d := range h.devices {
		f.Top = append(f.Top, h.summary(id, d, openBy[id]))
	}
	sort.Slice(f.Top, func(i, j int) bool {
		a, b := f.Top[i], f.Top[j]
		if a.OpenAlerts != b.OpenAlerts {
			return a.OpenAlerts > b.OpenAlerts
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.DeviceID < b.DeviceID
	})
	if len(f.Top) > n {
		f.Top = f.Top[:n]
	}
	return f
}

func (h *Hub) summary(id string, d *device, open int) DeviceSummary {
	names := make([]string, 0, len(d.metrics))
	for name := range d.metrics {
		names = append(names, name)
	}
	sort.Strings(names)
	return DeviceSummary{DeviceID: id, Site: d.site, LastSeen: d.last, Metrics: names, OpenAlerts: open, Score: d.maxScore}
}

// DeviceView is the device page: every metric's recent points and the
// device's recent alerts.
type DeviceView struct {
	DeviceSummary
	Series map[string][]Point `json:"series"`
	Alerts []sensor.Alert     `json:"alerts"`
}

// Device returns the device page, or false if the device is unknown.
func (h *Hub) Device(id string) (DeviceView, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.devices[id]
	if !ok {
		return DeviceView{}, false
	}
	open := 0
	for _, a := range h.open {
		if a.DeviceID == id {
			open++
		}
	}
	v := DeviceView{DeviceSummary: h.summary(id, d, open), Series: map[string][]Point{}, Alerts: []sensor.Alert{}}
	for name, s := range d.metrics {
		v.Series[name] = s.points()
	}
	for _, a := range h.alerts {
		if a.DeviceID == id {
			v.Alerts = append(v.Alerts, a)
		}
	}
	return v, true
}

// Alerts returns the last n alert events, newest first.
func (h *Hub) Alerts(n int) []sensor.Alert {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sensor.Alert, 0, min(n, len(h.alerts)))
	for i := len(h.alerts) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, h.alerts[i])
	}
	return out
}

// subscribe returns a channel of alert events as JSON; cancel it when done.
func (h *Hub) subscribe() (<-chan []byte, func()) {
	ch := make(chan []byte, 64)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// rateWindow counts readings per wall-clock second over the last 10 s.
type rateWindow struct {
	secs   [10]int64
	counts [10]int
}

func (w *rateWindow) add(now time.Time, n int) {
	s := now.Unix()
	i := s % 10
	if w.secs[i] != s {
		w.secs[i], w.counts[i] = s, 0
	}
	w.counts[i] += n
}

func (w *rateWindow) perSecond(now time.Time) float64 {
	s, total := now.Unix(), 0
	for i := range w.secs {
		if w.secs[i] > s-10 && w.secs[i] < s { // complete seconds only
			total += w.counts[i]
		}
	}
	return float64(total) / 9
}
