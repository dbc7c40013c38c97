package cli

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
)

// ReplayConfig holds the flags of `sensorflow replay`.
type ReplayConfig struct {
	Input  string
	Output string
	Rules  string
	Device string
	Metric string
	Ignore string
	Detect detect.Config
	// Stderr receives the summary line (rows that stepped back in time);
	// nil: none.
	Stderr io.Writer
}

// RegisterFlags registers the replay flags, the detect.* flags included.
func (c *ReplayConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Input, "input", "", "CSV file to replay (required; - for standard input): a timestamp column and one column per metric, separated by , or ;.")
	fs.StringVar(&c.Output, "output", "-", "CSV file to write the scores to (- for standard output).")
	fs.StringVar(&c.Rules, "rules", "", "Detection rules file (YAML), the processor's -detect.rules.")
	fs.StringVar(&c.Device, "device", "replay", "Device id the file is replayed as (rules may match it).")
	fs.StringVar(&c.Metric, "metric", "value", "Metric name a timestamp,value file is replayed as (rules and -detect.limits may match it).")
	fs.StringVar(&c.Ignore, "ignore", "", "Comma-separated columns that are not metrics (labels such as anomaly,changepoint).")
	c.Detect.RegisterFlags(fs)
}

// timeLayouts are the timestamp forms replay reads.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"}

func parseTimestamp(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q is neither RFC 3339 nor like 2014-04-01 00:00:00", s)
}

// timeColumns are the names a timestamp column may have (any case).
var timeColumns = []string{"timestamp", "datetime", "time", "_time", "ts"}

// Replay runs the processor's detector over a CSV history and writes one row
// per input row, in the same order. The detector is the live one: same
// code, same configuration, same rules.
//
// A file with the columns timestamp and value is one series: the output is
// timestamp,value,anomaly_score,alert (alert 1 while the live processor
// would have an alert open). Any other file is one device: a timestamp
// column and one column per metric (the header names them; a name is
// lowercased and every other character than a-z, 0-9 and _ becomes _), so a
// SKAB file or a pivoted InfluxDB CSV export replays as it is. Its output is
// timestamp, each metric's score, device_score (the highest), alert (1 while
// any of the device's alerts is open), alert_kind and alert_metrics (the
// kind of the strongest open alert and the metrics with an open alert,
// joined by +). An empty cell leaves that metric out of the row's reading;
// a column whose first value is not a number is not a metric, nor are
// InfluxDB's result, table, _start, _stop and _measurement.
//
// A row whose timestamp repeats or steps back (a clock change) is scored
// like any other, as the live processor scores a late reading: on its
// value, in arrival order; it adds nothing to the series' learned interval.
func Replay(c ReplayConfig, stdin io.Reader, stdout io.Writer) (err error) {
	if c.Input == "" {
		return errors.New("-input is required")
	}
	if c.Rules != "" {
		c.Detect.RulesFile = c.Rules
	}
	if c.Detect, err = c.Detect.WithRules(); err != nil {
		return err
	}
	if err := c.Detect.Validate(); err != nil {
		return err
	}
	if err := sensor.ValidateID("device_id", c.Device); err != nil {
		return fmt.Errorf("-device: %w", err)
	}
	if err := sensor.ValidateMetricName(c.Metric); err != nil {
		return fmt.Errorf("-metric: %w", err)
	}
	in := stdin
	if c.Input != "-" {
		f, err := os.Open(c.Input)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	out := stdout
	if c.Output != "-" {
		f, err := os.Create(c.Output)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		out = f
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	br := bufio.NewReaderSize(in, 64<<10)
	sep, err := sniffSeparator(br)
	if err != nil {
		return fmt.Errorf("%s: reading the header: %w", c.Input, err)
	}
	r := csv.NewReader(br)
	r.Comma = sep
	r.Comment = '#' // annotated CSV (InfluxDB exports)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("%s: reading the header: %w", c.Input, err)
	}
	header = append([]string(nil), header...)
	p := &replayer{cfg: c, det: detect.New(c.Detect), w: bw, ti: -1}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		for _, name := range timeColumns {
			if strings.EqualFold(h, name) && p.ti < 0 {
				p.ti = i
			}
		}
	}
	if p.ti < 0 {
		return fmt.Errorf("%s: no timestamp column (one of %s) in the header %q", c.Input, strings.Join(timeColumns, ", "), strings.Join(header, string(sep)))
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			if p.columns == nil { // no data row: write the header alone
				if err := p.start(header, nil); err != nil {
					return fmt.Errorf("%s: %w", c.Input, err)
				}
			}
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Input, err)
		}
		if p.columns == nil {
			if err := p.start(header, rec); err != nil {
				return fmt.Errorf("%s: %w", c.Input, err)
			}
		}
		if err := p.row(rec); err != nil {
			return fmt.Errorf("%s:%d: %w", c.Input, line, err)
		}
	}
	if p.late > 0 && c.Stderr != nil {
		fmt.Fprintf(c.Stderr, "replay: %d rows of %s repeat or step back in time; they were scored in file order, as the live processor scores a late reading\n", p.late, c.Input)
	}
	return bw.Flush()
}

// sniffSeparator reads the header line ahead and returns ; when it has more
// semicolons than commas, else ,.
func sniffSeparator(br *bufio.Reader) (rune, error) {
	for n := 64; ; n *= 2 {
		b, err := br.Peek(n)
		line := string(b)
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		} else if err == nil && n < br.Size() {
			continue
		}
		if strings.Count(line, ";") > strings.Count(line, ",") {
			return ';', nil
		}
		if len(b) == 0 && err != nil {
			return 0, err
		}
		return ',', nil
	}
}

// replayer holds one replay's state.
type replayer struct {
	cfg    ReplayConfig
	det    *detect.Detector
	w      *bufio.Writer
	ti     int // timestamp column
	single bool
	vi     int      // value column of a single series
	cols   []int    // metric columns of a device
	names  []string // their metric names, in column order
	// columns is non-nil once start ran.
	columns []string
	prev    time.Time
	late    int
	open    map[string]openAlert // alert id → open alert
	reading sensor.Reading
	scores  map[string]float64
}

type openAlert struct {
	kind    string
	score   float64
	metrics []string // the metric, or a device alert's contributors
}

// start decides the form from the header and the first data row (nil when
// there is none) and writes the output header.
func (p *replayer) start(header, first []string) error {
	p.columns = header
	var others []int
	// InfluxDB's own columns of an exported table are never metrics.
	ignore := map[string]bool{"result": true, "table": true, "_start": true, "_stop": true, "_measurement": true}
	for _, s := range strings.Split(p.cfg.Ignore, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ignore[strings.ToLower(s)] = true
		}
	}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if i == p.ti || h == "" || ignore[strings.ToLower(h)] {
			continue
		}
		others = append(others, i)
	}
	if len(others) == 1 && strings.TrimSpace(header[others[0]]) == "value" {
		p.single, p.vi = true, others[0]
		_, err := fmt.Fprintln(p.w, "timestamp,value,anomaly_score,alert")
		return err
	}
	seen := map[string]bool{}
	for _, i := range others {
		if first != nil && i < len(first) {
			if _, err := strconv.ParseFloat(strings.TrimSpace(first[i]), 64); err != nil && strings.TrimSpace(first[i]) != "" {
				continue // a text column (tags, table, result): not a metric
			}
		}
		name := metricName(header[i])
		if err := sensor.ValidateMetricName(name); err != nil {
			return fmt.Errorf("column %q: %w", header[i], err)
		}
		if seen[name] {
			return fmt.Errorf("column %q: metric %s named twice", header[i], name)
		}
		seen[name] = true
		p.cols, p.names = append(p.cols, i), append(p.names, name)
	}
	if len(p.cols) == 0 {
		return fmt.Errorf("no metric column besides %q", header[p.ti])
	}
	if len(p.cols) > sensor.MaxMetrics {
		return fmt.Errorf("%d metric columns, at most %d", len(p.cols), sensor.MaxMetrics)
	}
	p.open = map[string]openAlert{}
	p.scores = make(map[string]float64, len(p.names))
	p.reading = sensor.Reading{DeviceID: p.cfg.Device, Site: "replay", Metrics: make(map[string]float64, len(p.names))}
	var b strings.Builder
	b.WriteString("timestamp")
	for _, n := range p.names {
		b.WriteString("," + n + "_score")
	}
	b.WriteString(",device_score,alert,alert_kind,alert_metrics")
	_, err := fmt.Fprintln(p.w, b.String())
	return err
}

// metricName turns a column header into a metric name.
func metricName(h string) string {
	h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
	b := []byte(h)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			b[i] = '_'
		}
	}
	return string(b)
}

func field(rec []string, i int) string {
	if i >= len(rec) {
		return ""
	}
	return strings.TrimSpace(rec[i])
}

func parseValue(raw string) (float64, error) {
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("value %q is not a finite number", raw)
	}
	return v, nil
}

// row scores one data row and writes its output row.
func (p *replayer) row(rec []string) error {
	ts, err := parseTimestamp(field(rec, p.ti))
	if err != nil {
		return err
	}
	if !p.prev.IsZero() && !ts.After(p.prev) {
		p.late++
	}
	p.prev = ts
	if p.single {
		raw := field(rec, p.vi)
		v, err := parseValue(raw)
		if err != nil {
			return err
		}
		f, open, _ := p.det.Score(p.cfg.Device, p.cfg.Metric, ts, v)
		alert := "0"
		if open {
			alert = "1"
		}
		_, err = fmt.Fprintf(p.w, "%s,%s,%s,%s\n", field(rec, p.ti), raw, strconv.FormatFloat(detect.Round(f.Score), 'f', -1, 64), alert)
		return err
	}
	clear(p.reading.Metrics)
	for k, i := range p.cols {
		raw := field(rec, i)
		if raw == "" {
			continue
		}
		v, err := parseValue(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", p.names[k], err)
		}
		p.reading.Metrics[p.names[k]] = v
	}
	p.reading.TS = ts
	clear(p.scores)
	if len(p.reading.Metrics) > 0 {
		events, scores := p.det.Observe(&p.reading, nil, nil)
		for i, name := range p.reading.MetricNames() {
			p.scores[name] = scores[i]
		}
		for _, e := range events {
			if e.State != sensor.StateOpen {
				delete(p.open, e.AlertID)
				continue
			}
			a := openAlert{kind: e.Kind, score: e.Score, metrics: []string{e.Metric}}
			if len(e.Contributors) > 0 {
				a.metrics = a.metrics[:0]
				for _, c := range e.Contributors {
					a.metrics = append(a.metrics, c.Metric)
				}
			}
			p.open[e.AlertID] = a
		}
	}
	var b strings.Builder
	b.WriteString(csvField(field(rec, p.ti)))
	device := 0.0
	for _, n := range p.names {
		b.WriteByte(',')
		if s, ok := p.scores[n]; ok {
			b.WriteString(strconv.FormatFloat(s, 'f', -1, 64))
			device = max(device, s)
		}
	}
	ds, _ := p.det.DeviceScore(p.cfg.Device)
	device = max(device, ds)
	b.WriteString("," + strconv.FormatFloat(detect.Round(device), 'f', -1, 64))
	if len(p.open) == 0 {
		b.WriteString(",0,,")
	} else {
		var strongest openAlert
		in := map[string]bool{}
		for _, a := range p.open {
			for _, m := range a.metrics {
				in[m] = true
			}
			// the highest score; ties go to the kind first in the
			// alphabet, so the output does not depend on map order
			if strongest.kind == "" || a.score > strongest.score || a.score == strongest.score && a.kind < strongest.kind {
				strongest = a
			}
		}
		var metrics []string
		for _, n := range p.names { // column order: deterministic
			if in[n] {
				metrics = append(metrics, n)
			}
		}
		b.WriteString(",1," + strongest.kind + "," + strings.Join(metrics, "+"))
	}
	b.WriteByte('\n')
	_, err = p.w.WriteString(b.String())
	return err
}

// csvField quotes s when CSV needs it.
func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n\r") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}
