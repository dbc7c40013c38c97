package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// QueryConfig holds the flags of `sensorflow query`.
type QueryConfig struct {
	Cassandra sink.CassandraConfig
	Device    string
	Metric    string
	From      string
	To        string
	Format    string
	Limit     int
}

// RegisterFlags registers the query flags.
func (c *QueryConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Cassandra.RegisterFlags(fs)
	fs.StringVar(&c.Device, "device", "", "Device id (required).")
	fs.StringVar(&c.Metric, "metric", "", "Metric name (required).")
	fs.StringVar(&c.From, "from", "1h", "Start: RFC 3339 time, or a duration before now (e.g. 90m, 24h, 7d).")
	fs.StringVar(&c.To, "to", "0s", "End (inclusive): RFC 3339 time, or a duration before now.")
	fs.StringVar(&c.Format, "format", "table", "Output: table, csv or json (one JSON object per line).")
	fs.IntVar(&c.Limit, "limit", 100000, "Most rows to print.")
}

// Row is one archived reading of one metric.
type Row struct {
	TS       time.Time `json:"ts"`
	DeviceID string    `json:"device_id"`
	Metric   string    `json:"metric"`
	Value    float64   `json:"value"`
	Seq      int64     `json:"seq"`
	Site     string    `json:"site"`
}

// ParseTime reads an RFC 3339 time or a duration before now.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	s = strings.TrimPrefix(s, "-")
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 {
			return now.Add(-time.Duration(n * float64(24*time.Hour))).UTC(), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 90m, 24h or 7d", s)
	}
	return now.Add(-d).UTC(), nil
}

// Query reads a device's metric from the Cassandra archive, oldest first,
// one day partition after the other, and prints it.
func Query(ctx context.Context, c QueryConfig, out io.Writer) error {
	if err := sensor.ValidateID("-device", c.Device); err != nil {
		return err
	}
	if err := sensor.ValidateMetricName(c.Metric); err != nil {
		return fmt.Errorf("-metric: %w", err)
	}
	now := time.Now()
	from, err := ParseTime(c.From, now)
	if err != nil {
		return fmt.Errorf("-from: %w", err)
	}
	to, err := ParseTime(c.To, now)
	if err != nil {
		return fmt.Errorf("-to: %w", err)
	}
	if to.Before(from) {
		return errors.New("-to is before -from")
	}
	if to.Sub(from) > 400*24*time.Hour {
		return errors.New("-from to -to spans more than 400 days")
	}
	switch c.Format {
	case "table", "csv", "json":
	default:
		return fmt.Errorf("-format %q: want table, csv or json", c.Format)
	}
	sess, err := c.Cassandra.Session(c.Cassandra.Keyspace)
	if err != nil {
		return err
	}
	defer sess.Close()
	var rows []Row
	for day := from.Truncate(24 * time.Hour); !day.After(to) && len(rows) < c.Limit; day = day.Add(24 * time.Hour) {
		iter := sess.Query(`SELECT ts, value, seq, site FROM readings WHERE device_id = ? AND metric = ? AND day = ? AND ts >= ? AND ts <= ?`,
			c.Device, c.Metric, day, from, to).WithContext(ctx).PageSize(5000).Iter()
		var part []Row
		r := Row{DeviceID: c.Device, Metric: c.Metric}
		for iter.Scan(&r.TS, &r.Value, &r.Seq, &r.Site) {
			r.TS = r.TS.UTC()
			part = append(part, r)
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading %s of %s: %w", day.Format(time.DateOnly), c.Device, err)
		}
		sort.Slice(part, func(i, j int) bool { return part[i].TS.Before(part[j].TS) })
		rows = append(rows, part...)
	}
	if len(rows) > c.Limit {
		rows = rows[:c.Limit]
	}
	return printRows(out, c.Format, rows)
}

func printRows(out io.Writer, format string, rows []Row) error {
	switch format {
	case "csv":
		w := csv.NewWriter(out)
		_ = w.Write([]string{"ts", "device_id", "metric", "value", "seq", "site"})
		for _, r := range rows {
			_ = w.Write([]string{r.TS.Format(time.RFC3339Nano), r.DeviceID, r.Metric, strconv.FormatFloat(r.Value, 'g', -1, 64), strconv.FormatInt(r.Seq, 10), r.Site})
		}
		w.Flush()
		return w.Error()
	case "json":
		enc := json.NewEncoder(out)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TS\tVALUE\tSEQ\tSITE")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%g\t%d\t%s\n", r.TS.Format(time.RFC3339Nano), r.Value, r.Seq, r.Site)
	}
	fmt.Fprintf(w, "(%d rows)\n", len(rows))
	return w.Flush()
}
