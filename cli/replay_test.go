package cli

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"math/rand/v2"
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
		{"when,value\n", "no timestamp column"},
		{"timestamp,value\n2014-04-01 00:00:00,abc\n", "-:2: value \"abc\" is not a finite number"},
		{"timestamp,value\nyesterday,1\n", "-:2: timestamp \"yesterday\""},
		{"timestamp,value\n2014-04-01 00:00:00,NaN\n", "not a finite number"},
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
	f.Add("datetime;a;b;anomaly\n2020-03-09 10:14:33;1;2;0\n2020-03-09 10:14:32;1;;0\n")
	f.Add("#datatype,string\n,result,table,_time,t\n,_result,0,2026-11-22T10:00:00Z,21.5\n")
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
		// The input's rows as replay reads them: its separator, annotation
		// lines (#) skipped.
		sep, _ := sniffSeparator(bufio.NewReader(strings.NewReader(in)))
		ir := csv.NewReader(strings.NewReader(in))
		ir.Comma, ir.Comment, ir.FieldsPerRecord = sep, '#', -1
		inRows, _ := ir.ReadAll()
		if len(rows) != len(inRows) {
			t.Fatalf("%d output rows for %d input rows", len(rows), len(inRows))
		}
		// Every score column holds a score in [0,1]; a device's may be
		// empty (a metric missing from the row), a single series' never.
		single := strings.Join(rows[0], ",") == "timestamp,value,anomaly_score,alert"
		for _, r := range rows[1:] {
			for i, h := range rows[0] {
				if !strings.HasSuffix(h, "_score") {
					continue
				}
				if r[i] == "" && !single {
					continue
				}
				s, err := strconv.ParseFloat(r[i], 64)
				if err != nil || s < 0 || s > 1 {
					t.Fatalf("%s %q", h, r[i])
				}
			}
		}
	})
}

// A device file (SKAB's form: ; separated, a datetime column, metric names
// that are not metric names yet, label columns) replays as one device: each
// metric scored as the processor's Observe scores the same readings.
func TestReplayDevice(t *testing.T) {
	var in strings.Builder
	in.WriteString("datetime;Flow Rate;Pressure;anomaly\n")
	t0 := time.Date(2020, 3, 9, 10, 0, 0, 0, time.UTC)
	var readings []sensor.Reading
	for i := range 200 {
		flow, pressure := 32+float64(i%5)/10, 0.3+float64(i%3)/100
		if i >= 150 && i < 153 {
			flow += 40
		}
		ts := t0.Add(time.Duration(i) * time.Second)
		fmt.Fprintf(&in, "%s;%g;%g;0\n", ts.Format("2006-01-02 15:04:05"), flow, pressure)
		readings = append(readings, sensor.Reading{DeviceID: "pump", Site: "replay", TS: ts, Metrics: map[string]float64{"flow_rate": flow, "pressure": pressure}})
	}
	var out bytes.Buffer
	c := replayConfig(t, "-input", "-", "-device", "pump", "-ignore", "anomaly,changepoint")
	require.NoError(t, Replay(c, strings.NewReader(in.String()), &out))
	rows, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"timestamp", "flow_rate_score", "pressure_score", "device_score", "alert", "alert_kind", "alert_metrics"}, rows[0])
	require.Len(t, rows, 201)
	live := detect.New(c.Detect)
	opened := 0
	for i := range readings {
		events, scores := live.Observe(&readings[i], nil, nil)
		row := rows[i+1]
		require.Equal(t, fmt.Sprint(scores[0]), row[1], "row %d flow", i)
		require.Equal(t, fmt.Sprint(scores[1]), row[2], "row %d pressure", i)
		want := max(scores[0], scores[1])
		ds, _ := live.DeviceScore("pump")
		want = max(want, detect.Round(ds))
		require.Equal(t, fmt.Sprint(want), row[3], "row %d device", i)
		require.Equal(t, map[bool]string{true: "1", false: "0"}[live.OpenAlerts() > 0], row[4], "row %d alert", i)
		for _, e := range events {
			if e.State == sensor.StateOpen {
				opened++
				require.Equal(t, e.Kind, row[5])
				require.Equal(t, "flow_rate", row[6])
			}
		}
	}
	require.Positive(t, opened, "the flow spike opened an alert")
}

// Four of six pump metrics two spreads off for 300 rows: the replay shows
// the device alert open through the fault (kind device, the shifted
// metrics behind it), not before it and not long after it.
func TestReplayDeviceAlertLasts(t *testing.T) {
	const from, to = 600, 900
	rng := rand.New(rand.NewPCG(3, 5))
	var in strings.Builder
	in.WriteString("datetime;current;flow;pressure;vibration;temperature;voltage\n")
	t0 := time.Date(2020, 3, 9, 10, 0, 0, 0, time.UTC)
	for i := range 1200 {
		in.WriteString(t0.Add(time.Duration(i) * time.Second).Format("2006-01-02 15:04:05"))
		for j := range 6 {
			v := 10*float64(j+1) + rng.NormFloat64()
			if i >= from && i < to && j < 4 {
				v += 2 * float64(1-2*(j%2))
			}
			fmt.Fprintf(&in, ";%.4f", v)
		}
		in.WriteString("\n")
	}
	var out bytes.Buffer
	require.NoError(t, Replay(replayConfig(t, "-input", "-", "-device", "pump"), strings.NewReader(in.String()), &out))
	rows, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 1201)
	inFault := 0
	for i, row := range rows[1:] {
		if row[8] != "1" || row[9] != detect.KindDevice {
			continue
		}
		require.GreaterOrEqual(t, i, from, "device alert before the fault")
		require.Less(t, i, to+60, "device alert long after the fault")
		if i < to {
			inFault++
		}
		for _, m := range strings.Split(row[10], "+") {
			require.Contains(t, []string{"current", "flow", "pressure", "vibration"}, m, "row %d names an unshifted metric", i)
		}
	}
	require.Greater(t, inFault, (to-from)*8/10, "the device alert is open through most of the fault")
}

// A clock that steps back or a repeated timestamp never refuses the file:
// such rows are scored in file order and counted.
func TestReplayLateRows(t *testing.T) {
	in := "timestamp,value\n2014-04-01 01:00:00,1\n2014-04-01 01:05:00,1\n2014-04-01 00:05:00,1\n2014-04-01 00:05:00,2\n2014-04-01 00:10:00,1\n"
	var out, stderr bytes.Buffer
	c := replayConfig(t, "-input", "-")
	c.Stderr = &stderr
	require.NoError(t, Replay(c, strings.NewReader(in), &out))
	require.Len(t, strings.Split(strings.TrimSpace(out.String()), "\n"), 6)
	require.Contains(t, stderr.String(), "2 rows of - repeat or step back in time")
}

// A pivoted InfluxDB export: annotations, text columns (result, table,
// tags) and _time; only the numeric columns are metrics, empty cells are
// left out of the reading.
func TestReplayInfluxExport(t *testing.T) {
	in := "#group,false,false,true\n#datatype,string,long,dateTime:RFC3339,string,double,double\n" +
		",result,table,_time,device_id,humidity,temperature\n" +
		",_result,0,2026-11-22T10:00:00Z,dev-1,40.5,21.5\n" +
		",_result,0,2026-11-22T10:00:10Z,dev-1,,21.6\n"
	var out bytes.Buffer
	require.NoError(t, Replay(replayConfig(t, "-input", "-"), strings.NewReader(in), &out))
	rows, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"timestamp", "humidity_score", "temperature_score", "device_score", "alert", "alert_kind", "alert_metrics"}, rows[0])
	require.Equal(t, []string{"2026-11-22T10:00:10Z", "", "0", "0", "0", "", ""}, rows[2], "an empty cell has no score")
}

func TestReplayDeviceErrors(t *testing.T) {
	for _, tt := range []struct{ input, want string }{
		{"ts;a;a\n2014-04-01 00:00:00;1;2\n", "metric a named twice"},
		{"ts;a\n2014-04-01 00:00:00;x\n", "no metric column"},
		{"ts;a;b\n2014-04-01 00:00:00;1;2\n2014-04-01 00:00:01;1;Inf\n", "-:3: b: value \"Inf\" is not a finite number"},
	} {
		err := Replay(replayConfig(t, "-input", "-"), strings.NewReader(tt.input), &bytes.Buffer{})
		require.ErrorContains(t, err, tt.want, tt.input)
	}
}
