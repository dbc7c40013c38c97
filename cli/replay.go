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
	Detect detect.Config
}

// RegisterFlags registers the replay flags, the detect.* flags included.
func (c *ReplayConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Input, "input", "", "CSV file with header timestamp,value (required; - for standard input).")
	fs.StringVar(&c.Output, "output", "-", "CSV file to write timestamp,value,anomaly_score,alert to (- for standard output).")
	fs.StringVar(&c.Rules, "rules", "", "Detection rules file (YAML), the processor's -detect.rules.")
	fs.StringVar(&c.Device, "device", "replay", "Device id the series is replayed as (rules may match it).")
	fs.StringVar(&c.Metric, "metric", "value", "Metric name the series is replayed as (rules and -detect.limits may match it).")
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

// Replay runs the processor's detector over one series from a CSV file and
// writes, per input row and in the same order, its anomaly score and
// whether the live processor would have an alert open after it. The
// detector is the live one: same code, same configuration, same rules.
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
	r := csv.NewReader(bufio.NewReaderSize(in, 64<<10))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("%s: reading the header: %w", c.Input, err)
	}
	ti, vi := -1, -1
	for i, h := range header {
		switch strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) {
		case "timestamp":
			ti = i
		case "value":
			vi = i
		}
	}
	if ti < 0 || vi < 0 {
		return fmt.Errorf("%s: the header must name the columns timestamp and value, got %q", c.Input, strings.Join(header, ","))
	}
	det := detect.New(c.Detect)
	fmt.Fprintln(bw, "timestamp,value,anomaly_score,alert")
	var prev time.Time
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Input, err)
		}
		ts, err := parseTimestamp(strings.TrimSpace(rec[ti]))
		if err != nil {
			return fmt.Errorf("%s:%d: %w", c.Input, line, err)
		}
		raw := strings.TrimSpace(rec[vi])
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s:%d: value %q is not a finite number", c.Input, line, raw)
		}
		if ts.Before(prev) {
			return fmt.Errorf("%s:%d: timestamp %s is before the previous row's", c.Input, line, rec[ti])
		}
		prev = ts
		f, open, _ := det.Score(c.Device, c.Metric, ts, v)
		alert := "0"
		if open {
			alert = "1"
		}
		fmt.Fprintf(bw, "%s,%s,%s,%s\n", rec[ti], raw, strconv.FormatFloat(detect.Round(f.Score), 'f', -1, 64), alert)
	}
	return bw.Flush()
}
