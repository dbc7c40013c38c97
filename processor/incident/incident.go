// Package incident groups the alert events of a site into incidents, the way
// Prometheus' Alertmanager groups and inhibits: when many of a site's devices
// fall silent together (an outage of the broker, the network or the
// pipeline), or open an alert on the same metric at about the same time (a
// building's temperatures all rising), one site alert of kind outage or
// site_wide is published instead of one alert per device. The device alerts
// inside an incident are not published; they are counted and linked to the
// incident's alert id.
//
// A Grouper is pure apart from the clock it is given (arrival times, which
// drive holding and closing): no I/O. It is not safe for concurrent use;
// one stage owns it. All of a site's alerts must reach the same Grouper:
// the raw alerts topic is keyed by site.
package incident

import (
	"fmt"
	"sort"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Kinds of the site alerts a Grouper publishes, and the device id they carry
// (reserved: no device may use it).
const (
	KindOutage   = "outage"
	KindSiteWide = "site_wide"
	SiteDevice   = sensor.SiteDevice
	// OutageMetric is the metric an outage alert names: the readings stopped.
	OutageMetric = "readings"
	// kindGap is the kind of a device's alert for readings that resumed after
	// a silence (detect.KindGap; not imported, so the layers stay apart).
	kindGap = "gap"
	// kindCeiling is the device's summary alert past its hourly ceiling.
	kindCeiling = "ceiling"
)

// Census says how many devices of a site sent readings recently through one
// partition of the readings topic. Processors publish one per site and
// partition they consume; a Grouper adds up the latest of each partition to
// know a site's size.
type Census struct {
	Site      string    `json:"site"`
	Partition int       `json:"partition"`
	Devices   int       `json:"devices"`
	TS        time.Time `json:"ts"`
}

// Ref locates the message an alert came from, so the stage knows which
// offsets it may commit while alerts are held.
type Ref struct {
	Partition int
	Offset    int64
}

// Out is one decision of a Grouper, in order: publish the alert, or
// (Suppressed) store it linked to its incident (IncidentID set) without
// publishing it.
type Out struct {
	Alert      sensor.Alert
	Suppressed bool
}

// Grouper groups alert events per site. Create it with New.
type Grouper struct {
	cfg   Config
	sites map[string]*site
	// linked: device alert id → incident id, for alerts whose open event was
	// suppressed, so their resolve event is too.
	linked map[string]string
}

type site struct {
	name   string
	census map[int]censusEntry
	gaps   []onset            // gap onsets within Window
	onsets map[string][]onset // other onsets within Window, per metric
	held   []held
	heldID map[string]int // alert id → held events of it
	outage *group
	wide   map[string]*group // per metric
}

type censusEntry struct {
	devices int
	at      time.Time
}

type onset struct {
	device, id string
	startedAt  time.Time // the alert's start, in the readings' time
	resolved   bool      // its resolve event came already (partitions run at their own pace)
}

type held struct {
	a     sensor.Alert
	ref   Ref
	until time.Time
}

// group is an open incident.
type group struct {
	ev         sensor.Alert // its open event
	members    map[string]bool
	order      []string
	open       map[string]bool // member alert ids still open
	suppressed int
	lastAt     time.Time // arrival of the last member onset
	lastTS     time.Time // reading time of the last member event
}

// New returns a Grouper; cfg must be valid.
func New(cfg Config) *Grouper {
	return &Grouper{cfg: cfg, sites: map[string]*site{}, linked: map[string]string{}}
}

func (g *Grouper) site(name string) *site {
	s := g.sites[name]
	if s == nil {
		s = &site{name: name, census: map[int]censusEntry{}, onsets: map[string][]onset{}, heldID: map[string]int{}, wide: map[string]*group{}}
		g.sites[name] = s
	}
	return s
}

// Census records the device count of a site on one partition.
func (g *Grouper) Census(c Census, now time.Time) {
	g.site(c.Site).census[c.Partition] = censusEntry{devices: c.Devices, at: now}
}

// devices is the site's size: the latest census of each partition.
func (g *Grouper) devices(s *site, now time.Time) int {
	n := 0
	for p, e := range s.census {
		if now.Sub(e.at) > g.cfg.CensusTTL {
			delete(s.census, p)
			continue
		}
		n += e.devices
	}
	return n
}

// enough reports whether n devices of a site make an incident.
func (g *Grouper) enough(s *site, n int, now time.Time) bool {
	if n < g.cfg.MinDevices {
		return false
	}
	pop := g.devices(s, now)
	return pop == 0 || float64(n) > g.cfg.Share*float64(max(pop, n))
}

// Observe takes one alert event from the raw topic, arrived at now, and
// appends the decisions it allows to out. A held alert yields nothing now;
// Tick releases it, or a later Observe suppresses it.
func (g *Grouper) Observe(a sensor.Alert, ref Ref, now time.Time, out []Out) []Out {
	if a.DeviceID == SiteDevice {
		return append(out, Out{Alert: a}) // a site alert from elsewhere: pass it on
	}
	s := g.site(a.Site)
	if a.State == sensor.StateResolved {
		return g.resolved(s, a, ref, now, out)
	}
	switch a.Kind {
	case kindGap:
		if g.joins(s.outage, a) {
			return g.suppress(s.outage, a, now, out)
		}
		s.gaps = add(s.gaps, onset{device: a.DeviceID, id: a.AlertID, startedAt: a.StartedAt}, g.cfg.Window)
		s.held = append(s.held, held{a: a, ref: ref, until: now.Add(g.cfg.Hold)})
		s.heldID[a.AlertID]++
		if devs := distinct(s.gaps); g.enough(s, len(devs), now) {
			return g.openOutage(s, now, out)
		}
		return g.release(s, now, out)
	case kindCeiling:
		return append(out, Out{Alert: a})
	}
	if w := s.wide[a.Metric]; g.joins(w, a) {
		return g.suppress(w, a, now, out)
	}
	out = append(out, Out{Alert: a})
	on := add(s.onsets[a.Metric], onset{device: a.DeviceID, id: a.AlertID, startedAt: a.StartedAt}, g.cfg.Window)
	s.onsets[a.Metric] = on
	if devs := distinct(on); g.enough(s, len(devs), now) {
		if old := s.wide[a.Metric]; old != nil { // an earlier one, over in the readings' time
			delete(s.wide, a.Metric)
			out = append(out, Out{Alert: g.closeEvent(s, old)})
		}
		w := g.newGroup(s, KindSiteWide, a.Metric, on, now)
		for _, o := range on {
			if !o.resolved {
				w.open[o.id] = true
			}
		}
		delete(s.onsets, a.Metric)
		out = append(out, Out{Alert: w.ev})
		if len(w.open) == 0 { // every member is over already
			return append(out, Out{Alert: g.closeEvent(s, w)})
		}
		s.wide[a.Metric] = w
	}
	return out
}

// resolved handles a device alert's resolve event.
func (g *Grouper) resolved(s *site, a sensor.Alert, ref Ref, now time.Time, out []Out) []Out {
	if inc, ok := g.linked[a.AlertID]; ok {
		delete(g.linked, a.AlertID)
		a.IncidentID = inc
		out = append(out, Out{Alert: a, Suppressed: true})
		return g.memberResolved(s, a, now, out)
	}
	if s.heldID[a.AlertID] > 0 { // its open event waits: so does this one, behind it
		s.held = append(s.held, held{a: a, ref: ref, until: now.Add(g.cfg.Hold)})
		s.heldID[a.AlertID]++
		return out
	}
	out = append(out, Out{Alert: a})
	on := s.onsets[a.Metric]
	for i := range on {
		if on[i].id == a.AlertID {
			on[i].resolved = true
		}
	}
	return g.memberResolved(s, a, now, out)
}

// memberResolved closes a site-wide incident once all its members resolved.
func (g *Grouper) memberResolved(s *site, a sensor.Alert, now time.Time, out []Out) []Out {
	w := s.wide[a.Metric]
	if w == nil || !w.open[a.AlertID] {
		return out
	}
	delete(w.open, a.AlertID)
	if a.TS.After(w.lastTS) {
		w.lastTS = a.TS
	}
	if len(w.open) == 0 {
		delete(s.wide, a.Metric)
		out = append(out, Out{Alert: g.closeEvent(s, w)})
	}
	return out
}

// suppress links a device alert's open event to an open incident.
func (g *Grouper) suppress(w *group, a sensor.Alert, now time.Time, out []Out) []Out {
	a.IncidentID = w.ev.AlertID
	g.linked[a.AlertID] = w.ev.AlertID
	w.add(a.DeviceID, g.cfg.MaxMembers)
	w.open[a.AlertID] = true
	w.suppressed++
	w.lastAt = now
	if a.TS.After(w.lastTS) {
		w.lastTS = a.TS
	}
	return append(out, Out{Alert: a, Suppressed: true})
}

// openOutage opens a site's outage incident from its gap onsets and
// suppresses the gap alerts held so far.
func (g *Grouper) openOutage(s *site, now time.Time, out []Out) []Out {
	if s.outage != nil { // an earlier outage, over in the readings' time: it closes first
		out = append(out, Out{Alert: g.closeEvent(s, s.outage)})
	}
	w := g.newGroup(s, KindOutage, OutageMetric, s.gaps, now)
	s.outage, s.gaps = w, nil
	out = append(out, Out{Alert: w.ev})
	rest := s.held[:0]
	for _, h := range s.held {
		open := h.a.State == sensor.StateOpen
		_, linked := g.linked[h.a.AlertID]
		if h.a.Kind != kindGap || open && (h.a.StartedAt.Before(w.ev.StartedAt.Add(-g.cfg.Window)) || !g.joins(w, h.a)) || !open && !linked {
			rest = append(rest, h) // not part of this outage: still held
			continue
		}
		if s.heldID[h.a.AlertID]--; s.heldID[h.a.AlertID] <= 0 {
			delete(s.heldID, h.a.AlertID)
		}
		if open {
			out = g.suppress(w, h.a, now, out)
			continue
		}
		out = g.resolved(s, h.a, h.ref, now, out)
	}
	s.held = rest
	return out
}

// newGroup builds an incident and its open event from the onsets that made it.
func (g *Grouper) newGroup(s *site, kind, metric string, on []onset, now time.Time) *group {
	w := &group{members: map[string]bool{}, open: map[string]bool{}, lastAt: now}
	first := on[0].startedAt
	for _, o := range on {
		w.add(o.device, g.cfg.MaxMembers)
		if o.startedAt.Before(first) {
			first = o.startedAt
		}
		if o.startedAt.After(w.lastTS) {
			w.lastTS = o.startedAt
		}
	}
	sev, what := sensor.SeverityWarning, "opened an alert on "+metric
	if kind == KindOutage {
		sev, what = sensor.SeverityCritical, "resumed after a silence"
	}
	pop := g.devices(s, now)
	of := ""
	if pop > 0 {
		of = fmt.Sprintf(" of %d", pop)
	}
	w.ev = sensor.Alert{
		AlertID: sensor.AlertID(s.name+"/"+SiteDevice, kind+"/"+metric, first), DeviceID: SiteDevice, Site: s.name,
		Metric: metric, Kind: kind, Severity: sev, State: sensor.StateOpen, Score: 1, TS: w.lastTS, StartedAt: first,
		Members: w.list(), MemberCount: len(w.members),
		Message: fmt.Sprintf("%s: %d%s devices %s within %s (%s)", s.name, len(w.members), of, what, g.cfg.Window, kind),
	}
	return w
}

// closeEvent is the resolve event of an incident.
func (g *Grouper) closeEvent(s *site, w *group) sensor.Alert {
	ev := w.ev
	ev.State, ev.TS, ev.Score = sensor.StateResolved, w.lastTS, 0
	at := w.lastTS
	ev.ResolvedAt = &at
	ev.Members, ev.MemberCount, ev.Suppressed = w.list(), len(w.members), w.suppressed
	ev.Message = fmt.Sprintf("%s: %s incident over, %d devices, %d device alerts grouped into it", s.name, ev.Kind, len(w.members), w.suppressed)
	return ev
}

// Tick releases the gap alerts whose hold is over and closes outages that
// had no member for Window; call it every second or so.
func (g *Grouper) Tick(now time.Time, out []Out) []Out {
	for _, s := range g.sites {
		out = g.release(s, now, out)
		if w := s.outage; w != nil && now.Sub(w.lastAt) >= g.cfg.Window {
			s.outage = nil
			out = append(out, Out{Alert: g.closeEvent(s, w)})
		}
	}
	return out
}

// release publishes the held alerts whose hold is over, in arrival order.
func (g *Grouper) release(s *site, now time.Time, out []Out) []Out {
	n := 0
	for n < len(s.held) && !s.held[n].until.After(now) {
		h := s.held[n]
		if s.heldID[h.a.AlertID]--; s.heldID[h.a.AlertID] <= 0 {
			delete(s.heldID, h.a.AlertID)
		}
		out = append(out, Out{Alert: h.a})
		n++
	}
	s.held = append(s.held[:0], s.held[n:]...)
	return out
}

// Oldest returns, per partition, the offset of the oldest message whose
// alert is still held: the stage may commit only below it.
func (g *Grouper) Oldest() map[int]int64 {
	m := map[int]int64{}
	for _, s := range g.sites {
		for _, h := range s.held {
			if o, ok := m[h.ref.Partition]; !ok || h.ref.Offset < o {
				m[h.ref.Partition] = h.ref.Offset
			}
		}
	}
	return m
}

// Held is the number of alert events held now.
func (g *Grouper) Held() int {
	n := 0
	for _, s := range g.sites {
		n += len(s.held)
	}
	return n
}

// Open is the number of incidents open now.
func (g *Grouper) Open() int {
	n := 0
	for _, s := range g.sites {
		n += len(s.wide)
		if s.outage != nil {
			n++
		}
	}
	return n
}

func (w *group) add(device string, maxList int) {
	if w.members[device] {
		return
	}
	w.members[device] = true
	if len(w.order) < maxList {
		w.order = append(w.order, device)
	}
}

func (w *group) list() []string {
	l := append([]string(nil), w.order...)
	sort.Strings(l)
	return l
}

// add appends o to the onsets and keeps those that started within window
// of the newest (readings' time: a backlog processed in seconds after an
// outage of the pipeline groups what happened together, not what arrived
// together).
func add(on []onset, o onset, window time.Duration) []onset {
	on = append(on, o)
	newest := o.startedAt
	for _, x := range on {
		if x.startedAt.After(newest) {
			newest = x.startedAt
		}
	}
	keep := on[:0]
	for _, x := range on {
		if newest.Sub(x.startedAt) <= window {
			keep = append(keep, x)
		}
	}
	return keep
}

// joins reports whether device alert a belongs to the open incident w: it
// started within the window after the incident's newest member.
func (g *Grouper) joins(w *group, a sensor.Alert) bool {
	return w != nil && !a.StartedAt.After(w.lastTS.Add(g.cfg.Window))
}

func distinct(on []onset) []string {
	seen := make(map[string]bool, len(on))
	var out []string
	for _, o := range on {
		if !seen[o.device] {
			seen[o.device] = true
			out = append(out, o.device)
		}
	}
	return out
}
