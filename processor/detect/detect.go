// Package detect finds anomalies in streams of readings. It is pure: no I/O,
// no wall clock (time comes from the readings), deterministic for the same
// input. The processor runs it live and the replay command runs the same
// code offline.
//
// Each (device, metric) series keeps a small state. Scorers, one algorithm
// per file, rate the newest value of a series in [0,1]; the highest score
// wins and names the alert kind. An alert opens when the score reaches
// OpenScore after the warm-up, stays open without repeats, and resolves once
// the score stayed below ResolveScore for ResolveAfter readings (hysteresis).
package detect

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// Config tunes detection. The zero value is not usable: start from
// RegisterFlags' defaults or DefaultConfig.
type Config struct {
	Warmup       int
	OpenScore    float64
	ResolveScore float64
	ResolveAfter int
	Z            float64
	AlphaMin     float64
	StuckAfter   int
	// Extremes turns on the extremes scorer: values, short-run levels and
	// sustained rises or falls beyond anything the series has shown.
	Extremes bool
	// Shape turns on the window-shape scorer: a lasting change in the
	// shape of the series' movement (shape.go).
	Shape bool
	// ReopenWithin: an alert that would resolve waits this long (of the
	// readings' time) for the series to stay quiet; a detection meanwhile
	// continues it. 0: resolve at once.
	ReopenWithin time.Duration
	// MaxAlertsPerHour is each device's ceiling on alert openings per hour;
	// past it alerts are held back and one summary alert counts them.
	// 0: none.
	MaxAlertsPerHour int
	// DeviceZ: a device alert opens when the combined score of a
	// device's metrics stands this many spreads above its usual level
	// (see device.go). 0: no device scoring.
	DeviceZ float64
	// Limits are static bounds per metric name; crossing one is a critical
	// "limit" alert regardless of the learned behaviour.
	Limits map[string]Limit
	// RulesFile is a YAML file of per-series overrides, loaded by
	// WithRules into Rules.
	RulesFile string
	Rules     []Rule
}

// Limit is a static range; a NaN bound is open.
type Limit struct{ Min, Max float64 }

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Warmup: 30, OpenScore: 0.4, ResolveScore: 0.2, ResolveAfter: 1, Z: 5, AlphaMin: 0.005, StuckAfter: 30, Extremes: true, Shape: true,
		ReopenWithin: 0, MaxAlertsPerHour: 30, DeviceZ: 6}
}

// RegisterFlags registers the detect.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultConfig()
	fs.IntVar(&c.Warmup, "detect.warmup", d.Warmup, "Readings of a series before it may alert.")
	fs.Float64Var(&c.OpenScore, "detect.open-score", d.OpenScore, "Anomaly score in [0,1] at which an alert opens.")
	fs.Float64Var(&c.ResolveScore, "detect.resolve-score", d.ResolveScore, "Score below which an open alert counts towards resolving.")
	fs.IntVar(&c.ResolveAfter, "detect.resolve-after", d.ResolveAfter, "Consecutive readings below -detect.resolve-score that resolve an alert.")
	fs.Float64Var(&c.Z, "detect.z", d.Z, "Spreads from the level beyond which a value is clipped before it updates the baseline; also the half-width of an alert's expected range.")
	fs.Float64Var(&c.AlphaMin, "detect.alpha", d.AlphaMin, "Smallest weight of a new reading in the level and spread estimates (smaller: slower baseline, catches slower drift).")
	fs.IntVar(&c.StuckAfter, "detect.stuck-after", d.StuckAfter, "Identical consecutive readings that make a stuck-sensor alert, on a series whose value changes at every reading; a coarse one that repeats its values needs up to twice as many (0: off).")
	fs.BoolVar(&c.Extremes, "detect.extremes", d.Extremes, "Alert on values, short-run levels and sustained rises or falls beyond anything a series has shown, once it has been watched for two days.")
	fs.BoolVar(&c.Shape, "detect.shape", d.Shape, "Alert on a lasting change in the shape of a series' movement (a rhythm that speeds up) while its values stay in their usual range.")
	fs.DurationVar(&c.ReopenWithin, "detect.reopen-within", d.ReopenWithin, "An alert that resolves and would reopen within this time (of the readings' clock) stays one open alert; its resolve event waits that long (0: resolve at once).")
	fs.IntVar(&c.MaxAlertsPerHour, "detect.max-alerts-per-hour", d.MaxAlertsPerHour, "Ceiling on alert openings per device and hour; past it alerts are held back and one summary alert (kind ceiling) says how many (0: none).")
	fs.Float64Var(&c.DeviceZ, "detect.device-z", d.DeviceZ, "A device alert opens when its metrics' combined deviation stands this many spreads above its usual level; it stays open while the device is out of its normal regime (0: off).")
	fs.StringVar(&c.RulesFile, "detect.rules", "", "YAML file of detection rules per device pattern, site and metric (see processor/README.md).")
	fs.Func("detect.limits", "Static limits per metric, e.g. temperature=-40:85,humidity=0:100 (either bound may be empty).", func(s string) error {
		l, err := ParseLimits(s)
		if err == nil {
			c.Limits = l
		}
		return err
	})
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Warmup < 2:
		return errors.New("detect.warmup must be at least 2")
	case c.OpenScore <= 0 || c.OpenScore > 1:
		return errors.New("detect.open-score must be in (0,1]")
	case c.ResolveScore < 0 || c.ResolveScore >= c.OpenScore:
		return errors.New("detect.resolve-score must be in [0, open-score)")
	case c.ResolveAfter < 1:
		return errors.New("detect.resolve-after must be at least 1")
	case c.Z <= 0:
		return errors.New("detect.z must be positive")
	case c.AlphaMin <= 0 || c.AlphaMin >= 1:
		return errors.New("detect.alpha must be in (0,1)")
	case c.StuckAfter < 0:
		return errors.New("detect.stuck-after must not be negative")
	case c.DeviceZ < 0:
		return errors.New("detect.device-z must not be negative")
	case c.ReopenWithin < 0 || c.MaxAlertsPerHour < 0:
		return errors.New("detect.reopen-within and detect.max-alerts-per-hour must not be negative")
	}
	return nil
}

// WithRules returns c with its RulesFile loaded (c itself without one).
func (c Config) WithRules() (Config, error) {
	if c.RulesFile == "" {
		return c, nil
	}
	return LoadRules(c.RulesFile, c)
}

// ParseLimits parses "metric=min:max,..." where either bound may be empty.
func ParseLimits(s string) (map[string]Limit, error) {
	out := map[string]Limit{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, rng, ok := strings.Cut(strings.TrimSpace(part), "=")
		lo, hi, ok2 := strings.Cut(rng, ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("limit %q: want metric=min:max", part)
		}
		if err := sensor.ValidateMetricName(name); err != nil {
			return nil, fmt.Errorf("limit %q: %w", part, err)
		}
		l := Limit{Min: nan, Max: nan}
		var err error
		if lo != "" {
			if l.Min, err = strconv.ParseFloat(lo, 64); err != nil {
				return nil, fmt.Errorf("limit %q: min: %w", part, err)
			}
		}
		if hi != "" {
			if l.Max, err = strconv.ParseFloat(hi, 64); err != nil {
				return nil, fmt.Errorf("limit %q: max: %w", part, err)
			}
		}
		if l.Min > l.Max {
			return nil, fmt.Errorf("limit %q: min above max", part)
		}
		out[name] = l
	}
	return out, nil
}

// Finding is one scorer's verdict on the newest value of a series.
type Finding struct {
	Score float64
	Kind  string
	// Expected range of the value according to the scorer.
	Low, High float64
	// Hold keeps an open alert open though the score is low: the
	// condition that opened it persists (a sensor still stuck).
	Hold  bool
	dev   float64 // signed distance from the level (zscore); for a burst, its short-run mean z
	step  float64 // change from the previous value (zscore only)
	pace  bool    // a spread change of the steps, not of the values around their mean; a zscore: the step from the previous value spoke
	stepZ float64 // a zscore whose step spoke: that step in the usual step's spreads
}

type seriesKey struct{ device, metric string }

// Detector holds the state of every series it has seen. It is not safe for
// concurrent use: the processor keeps one per consumer loop (all readings of
// a device arrive on one Kafka partition, in order).
type Detector struct {
	cfg      Config
	series   map[seriesKey]*Series
	resolved map[string]*Config // per-series configurations made by rules
	budgets  map[string]*budget // per device, with -detect.max-alerts-per-hour
	devices  map[string]*device // per device of two metrics or more, with -detect.device-z
	open     int                // published alerts open now
}

// New returns a detector; cfg must be valid.
func New(cfg Config) *Detector {
	return &Detector{cfg: cfg, series: map[seriesKey]*Series{}, budgets: map[string]*budget{}, devices: map[string]*device{}}
}

// newSeries creates the state of a series; its device's alert budget
// comes with the device's first alert.
func (d *Detector) newSeries(device, site, metric string) *Series {
	s := &Series{cfg: d.forSeries(device, site, metric)}
	if d.cfg.MaxAlertsPerHour > 0 {
		s.budget = d.budgets[device] // nil until the device's first alert
	}
	return s
}

// ForgetDevices drops the state of every series of the given devices (and
// their alert budgets) and returns how many series it dropped. Their next
// readings start new series, which warm up again. The processor calls it
// when a partition comes back after another processor consumed it: the
// state it holds is older than the readings it now gets, and would take
// the readings' resumption for a gap.
func (d *Detector) ForgetDevices(devices map[string]bool) int {
	n := 0
	for k, s := range d.series {
		if !devices[k.device] {
			continue
		}
		if s.alert.open && !s.alert.muted {
			d.open--
		}
		delete(d.series, k)
		n++
	}
	for dev := range devices {
		delete(d.budgets, dev)
		if dv := d.devices[dev]; dv != nil && dv.alert.open && !dv.alert.muted {
			d.open--
		}
		delete(d.devices, dev)
	}
	return n
}

// Series returns the number of series tracked.
func (d *Detector) Series() int { return len(d.series) }

// OpenAlerts returns the number of alerts currently open (kept as they open
// and resolve: the processor reads it after every batch).
func (d *Detector) OpenAlerts() int { return d.open }

// Observe feeds one reading, appends the alert events it raises to out and
// the anomaly score of each of its metrics, in metric-name order, to scores.
func (d *Detector) Observe(r *sensor.Reading, out []sensor.Alert, scores []float64) ([]sensor.Alert, []float64) {
	var buf [16]string
	var sbuf [16]*Series
	var b *budget
	names := r.AppendMetricNames(buf[:0])
	series := sbuf[:0]
	for _, name := range names { // sorted: deterministic event order
		v := r.Metrics[name]
		k := seriesKey{r.DeviceID, name}
		s := d.series[k]
		if s == nil {
			s = d.newSeries(r.DeviceID, r.Site, name)
			d.series[k] = s
		}
		f := s.Observe(s.cfg, name, r.TS, v)
		scores = append(scores, round(f.Score))
		out = d.transition(s, r, name, v, f, out)
		if b == nil {
			b = s.budget
		}
		series = append(series, s)
	}
	if d.cfg.DeviceZ > 0 && len(series) >= 2 {
		out = d.observeDevice(r, names, series, out)
		if b == nil {
			b = d.budgets[r.DeviceID]
		}
	}
	return d.endWindow(b, r, out), scores
}

// Score feeds one value of a single series (the replay command's entry) and
// returns the anomaly score and whether an alert is open after it.
func (d *Detector) Score(device, metric string, ts time.Time, v float64) (Finding, bool, []sensor.Alert) {
	r := sensor.Reading{DeviceID: device, Site: "replay", TS: ts, Metrics: map[string]float64{metric: v}}
	k := seriesKey{device, metric}
	s := d.series[k]
	if s == nil {
		s = d.newSeries(device, r.Site, metric)
		d.series[k] = s
	}
	f := s.Observe(s.cfg, metric, ts, v)
	alerts := d.endWindow(s.budget, &r, d.transition(s, &r, metric, v, f, nil))
	return f, s.alert.open && !s.alert.muted, alerts
}
