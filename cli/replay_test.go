package cli

import (
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
)

func replayConfig(t *testing.T, args ...string) ReplayConfig {
	var c ReplayConfig
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse(args))
	return c
}

// series is 300 rows of a noisy level with a jump at row 200.
func series() (csvText string, values []float64, stamps []time.Time) {
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	t0 := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		v := 10 + float64(i%7)/10
		if i >= 200 && i < 205 {
			v += 50
		}
		ts := t0.Add(time.Duration(i) * 5 * time.Minute)
		fmt.Fprintf(&b, "%s,%g\n", ts.Format("2006-01-02 15:04:05"), v)
		values, stamps = append(values, v), append(stamps, ts)
	}
	return b.String(), values, stamps
}

func TestReplayMatchesTheLiveDetector(t *testing.T) {
	in, values, stamps := series()
	var out bytes.Buffer
	c := replayConfig(t, "-input", "-")
	require.NoError(t, Replay(c, strings.NewReader(in), &out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Equal(t, "timestamp,value,anomaly_score,alert", lines[0])
	require.Len(t, lines, 301, "one row per input row")

	// The live path: the processor's Observe over the same readings.
	live := detect.New(c.Detect)
	alerts := 0
	for i, v := range values {
		r := sensor.Reading{DeviceID: "replay", Site: "replay", TS: stamps[i], Metrics: map[string]float64{"value": v}}
		events, scores := live.Observe(&r, nil, nil)
		open := live.OpenAlerts() == 1
		f := strings.Split(lines[i+1], ",")
		require.Equal(t, stamps[i].Format("2006-01-02 15:04:05"), f[0], "row %d keeps its timestamp", i)
		require.Equal(t, fmt.Sprint(scores[0]), f[2], "row %d: replay score = live score", i)
		require.Equal(t, map[bool]string{true: "1", false: "0"}[open], f[3], "row %d: alert column = live alert state", i)
		alerts += len(events)
	}
	require.Positive(t, alerts, "the jump raised an alert")
	require.Contains(t, lines[201], ",1", "alert open at the jump")
}

func TestReplayRulesAndErrors(t *testing.T) {
	in, _, _ := series()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte("rules:\n  - metric: value\n    max: 5\n"), 0o644))
	var out bytes.Buffer
	require.NoError(t, Replay(replayConfig(t, "-input", "-", "-rules", rules), strings.NewReader(in), &out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.True(t, strings.HasSuffix(lines[1], ",1,1"), "a limit below every value alerts from the first row: %s", lines[1])

	for _, tt := range []struct{ input, want string }{
		{"time,value\n", "must name the columns timestamp and value"},
		{"timestamp,value\n2014-04-01 00:00:00,abc\n", "-:2: value \"abc\" is not a finite number"},
		{"timestamp,value\nyesterday,1\n", "-:2: timestamp \"yesterday\""},
		{"timestamp,value\n2014-04-01 00:00:00,NaN\n", "not a finite number"},
		{"timestamp,value\n2014-04-02 00:00:00,1\n2014-04-01 00:00:00,1\n", "-:3: timestamp 2014-04-01 00:00:00 is before"},
	} {
		err := Replay(replayConfig(t, "-input", "-"), strings.NewReader(tt.input), &bytes.Buffer{})
		require.ErrorContains(t, err, tt.want, tt.input)
	}
	require.ErrorContains(t, Replay(replayConfig(t, "-input", "-", "-rules", filepath.Join(dir, "none.yaml")), strings.NewReader(in), &bytes.Buffer{}), "none.yaml")

	// RFC 3339 timestamps too.
	out.Reset()
	require.NoError(t, Replay(replayConfig(t, "-input", "-"), strings.NewReader("timestamp,value\n2026-11-22T10:00:00Z,1\n2026-11-22T11:00:01.5+01:00,2\n"), &out))
	require.Equal(t, "timestamp,value,anomaly_score,alert\n2026-11-22T10:00:00Z,1,0,0\n2026-11-22T11:00:01.5+01:00,2,0,0\n", out.String())
}

// FuzzReplay: any CSV either replays to one row per input row with scores
// in [0,1], or fails with an error that names the input.
func FuzzReplay(f *testing.F) {
	f.Add("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2.5\n")
	f.Add("timestamp,value\n2014-04-01T00:00:00Z,NaN\n")
	f.Add("value,timestamp\n1,2014-04-01 00:00:00\n")
	f.Add("timestamp,value\n2014-04-01 00:05:00,1\n2014-04-01 00:00:00,1\n")
	f.Add("timestamp,value\n\"2014-04-01 00:00:00\",\"1e999\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		c := replayConfig(t, "-input", "-")
		var out strings.Builder
		err := Replay(c, strings.NewReader(in), &out)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "-:") {
				t.Fatalf("error does not name the input: %v", err)
			}
			return
		}
		rows, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
		if err != nil {
			t.Fatalf("output is not CSV: %v", err)
		}
		inRows, _ := csv.NewReader(strings.NewReader(in)).ReadAll()
		if len(rows) != len(inRows) {
			t.Fatalf("%d output rows for %d input rows", len(rows), len(inRows))
		}
		for _, r := range rows[1:] {
			s, err := strconv.ParseFloat(r[2], 64)
			if err != nil || s < 0 || s > 1 {
				t.Fatalf("score %q", r[2])
			}
		}
	})
}
