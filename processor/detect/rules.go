package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Rule overrides detection settings for the series it matches. Device,
// Site and Metric are glob patterns (path.Match: *, ?, [a-z]); empty
// matches everything. A device type is a device-id pattern such as
// "boiler-*". Every matching rule applies, in file order, later ones over
// earlier ones.
type Rule struct {
	Device, Site, Metric string
	Settings
	// Where the rule was written, for messages.
	File string
	Line int
}

// Settings are the per-series settings a rules file may set; nil keeps
// the value from the flags (or from the file's defaults).
type Settings struct {
	Warmup       *int     `yaml:"warmup"`
	OpenScore    *float64 `yaml:"open_score"`
	ResolveScore *float64 `yaml:"resolve_score"`
	ResolveAfter *int     `yaml:"resolve_after"`
	Z            *float64 `yaml:"z"`
	Alpha        *float64 `yaml:"alpha"`
	StuckAfter   *int     `yaml:"stuck_after"`
	Extremes     *bool    `yaml:"extremes"`
	Min          *float64 `yaml:"min"`
	Max          *float64 `yaml:"max"`
}

// rulesFile is the YAML form:
//
//	defaults:            # every series
//	  open_score: 0.6
//	rules:
//	  - metric: temperature
//	    device: "machine-*"
//	    min: -20
//	    max: 120
//	  - metric: requests   # new highs are expected as the fleet grows
//	    extremes: false
type rulesFile struct {
	Defaults Settings  `yaml:"defaults"`
	Rules    []ruleDoc `yaml:"rules"`
}

type ruleDoc struct {
	Device   string `yaml:"device"`
	Site     string `yaml:"site"`
	Metric   string `yaml:"metric"`
	Settings `yaml:",inline"`
}

// LoadRules reads a rules file and returns base with the file's defaults
// applied and its rules attached. Errors name the file, the line and the
// field.
func LoadRules(file string, base Config) (Config, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return base, fmt.Errorf("detection rules: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return base, fmt.Errorf("%s: %v", file, err)
	}
	var doc rulesFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return base, fmt.Errorf("%s: %v", file, err)
	}
	cfg := base
	cfg.Limits = maps.Clone(base.Limits)
	defaults := nodeAt(&root, "defaults")
	if err := checkSettings(file, defaults, "defaults", &doc.Defaults); err != nil {
		return base, err
	}
	doc.Defaults.apply(&cfg, "")
	if err := cfg.Validate(); err != nil {
		return base, fmt.Errorf("%s:%d: defaults: %w", file, lineOf(defaults), err)
	}
	rulesNode := nodeAt(&root, "rules")
	cfg.Rules = nil
	for i, rd := range doc.Rules {
		var n *yaml.Node
		if rulesNode != nil && i < len(rulesNode.Content) {
			n = rulesNode.Content[i]
		}
		where := fmt.Sprintf("rules[%d]", i)
		for field, pat := range map[string]string{"device": rd.Device, "site": rd.Site, "metric": rd.Metric} {
			if _, err := path.Match(pat, ""); err != nil {
				return base, fmt.Errorf("%s:%d: %s.%s: bad pattern %q", file, fieldLine(n, field), where, field, pat)
			}
		}
		if err := checkSettings(file, n, where, &rd.Settings); err != nil {
			return base, err
		}
		// The rule on top of the defaults must make a valid setting.
		probe := cfg
		rd.Settings.apply(&probe, "probe")
		if err := probe.Validate(); err != nil {
			return base, fmt.Errorf("%s:%d: %s: %w", file, lineOf(n), where, err)
		}
		cfg.Rules = append(cfg.Rules, Rule{Device: rd.Device, Site: rd.Site, Metric: rd.Metric, Settings: rd.Settings, File: file, Line: lineOf(n)})
	}
	return cfg, nil
}

// checkSettings checks each value on its own, naming its line.
func checkSettings(file string, n *yaml.Node, where string, s *Settings) error {
	bad := func(field, msg string) error {
		return fmt.Errorf("%s:%d: %s.%s: %s", file, fieldLine(n, field), where, field, msg)
	}
	switch {
	case s.Warmup != nil && *s.Warmup < 2:
		return bad("warmup", "must be at least 2")
	case s.OpenScore != nil && (*s.OpenScore <= 0 || *s.OpenScore > 1):
		return bad("open_score", "must be in (0,1]")
	case s.ResolveScore != nil && (*s.ResolveScore < 0 || *s.ResolveScore >= 1):
		return bad("resolve_score", "must be in [0,1)")
	case s.ResolveAfter != nil && *s.ResolveAfter < 1:
		return bad("resolve_after", "must be at least 1")
	case s.Z != nil && *s.Z <= 0:
		return bad("z", "must be positive")
	case s.Alpha != nil && (*s.Alpha <= 0 || *s.Alpha >= 1):
		return bad("alpha", "must be in (0,1)")
	case s.StuckAfter != nil && *s.StuckAfter < 0:
		return bad("stuck_after", "must not be negative")
	case s.Min != nil && s.Max != nil && *s.Min > *s.Max:
		return bad("min", "is above max "+strconv.FormatFloat(*s.Max, 'g', -1, 64))
	}
	return nil
}

// apply sets the non-nil settings on cfg; limits go to metric's entry
// (metric "" for the defaults, which cannot set limits for every metric).
func (s *Settings) apply(cfg *Config, metric string) {
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setF := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	set(&cfg.Warmup, s.Warmup)
	setF(&cfg.OpenScore, s.OpenScore)
	setF(&cfg.ResolveScore, s.ResolveScore)
	set(&cfg.ResolveAfter, s.ResolveAfter)
	setF(&cfg.Z, s.Z)
	setF(&cfg.AlphaMin, s.Alpha)
	set(&cfg.StuckAfter, s.StuckAfter)
	if s.Extremes != nil {
		cfg.Extremes = *s.Extremes
	}
	if metric != "" && (s.Min != nil || s.Max != nil) {
		l, ok := cfg.Limits[metric]
		if !ok {
			l = Limit{Min: nan, Max: nan}
		}
		if s.Min != nil {
			l.Min = *s.Min
		}
		if s.Max != nil {
			l.Max = *s.Max
		}
		if cfg.Limits == nil {
			cfg.Limits = map[string]Limit{}
		}
		cfg.Limits[metric] = l
	}
}

func (r *Rule) matches(device, site, metric string) bool {
	ok := func(pat, s string) bool {
		if pat == "" {
			return true
		}
		m, _ := path.Match(pat, s)
		return m
	}
	return ok(r.Device, device) && ok(r.Site, site) && ok(r.Metric, metric)
}

// forSeries returns the configuration of one series: c itself when no
// rule matches, else c with the matching rules applied, shared by every
// series with the same metric and the same matching rules.
func (d *Detector) forSeries(device, site, metric string) *Config {
	if len(d.cfg.Rules) == 0 {
		return &d.cfg
	}
	key := []byte(metric)
	for i := range d.cfg.Rules {
		if d.cfg.Rules[i].matches(device, site, metric) {
			key = strconv.AppendInt(append(key, 0), int64(i), 10)
		}
	}
	if len(key) == len(metric) {
		return &d.cfg
	}
	if c, ok := d.resolved[string(key)]; ok {
		return c
	}
	c := d.cfg
	c.Limits = maps.Clone(d.cfg.Limits)
	for i := range d.cfg.Rules {
		if d.cfg.Rules[i].matches(device, site, metric) {
			d.cfg.Rules[i].Settings.apply(&c, metric)
		}
	}
	if d.resolved == nil {
		d.resolved = map[string]*Config{}
	}
	d.resolved[string(key)] = &c
	return &c
}

// nodeAt returns the value of key in the document's top-level mapping.
func nodeAt(root *yaml.Node, key string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return mappingValue(n, key)
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// fieldLine is the line of a field in a mapping node, or of the node.
func fieldLine(n *yaml.Node, field string) int {
	if v := mappingValue(n, field); v != nil {
		return v.Line
	}
	return lineOf(n)
}

func lineOf(n *yaml.Node) int {
	if n == nil {
		return 1
	}
	return n.Line
}
