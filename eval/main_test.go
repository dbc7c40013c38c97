package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAlertsAsScores(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
	require.NoError(t, os.WriteFile(from, []byte("timestamp,value,anomaly_score,alert\n2014-04-01 00:00:00,1,0.7,0\n2014-04-01 00:05:00,2,0.1,1\n2014-04-01 00:10:00,2,0.1,1\n2014-04-01 00:15:00,2,0.1,0\n2014-04-01 00:20:00,2,0.9,1\n"), 0o644))
	require.NoError(t, alertsAsScores(from, to))
	got, err := os.ReadFile(to)
	require.NoError(t, err)
	require.Equal(t, "timestamp,value,anomaly_score,alert\n2014-04-01 00:00:00,1,0,0\n2014-04-01 00:05:00,2,1,1\n2014-04-01 00:10:00,2,0,1\n2014-04-01 00:15:00,2,0,0\n2014-04-01 00:20:00,2,1,1\n", string(got), "1 where an alert opens")

	require.NoError(t, os.WriteFile(from, []byte("timestamp,value\n2014-04-01 00:00:00,1\n"), 0o644))
	require.ErrorContains(t, alertsAsScores(from, to), "no anomaly_score and alert columns")
}

func TestSplitLabels(t *testing.T) {
	dir := t.TempDir()
	labels := filepath.Join(dir, "windows.json")
	require.NoError(t, os.WriteFile(labels, []byte(`{"c/b.csv": [["2014-04-01 00:00:00", "2014-04-01 01:00:00"]], "c/a.csv": [], "c/c.csv": []}`), 0o644))
	halves, err := splitLabels(labels, dir)
	require.NoError(t, err)
	read := func(p string) map[string]any {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		return m
	}
	require.Equal(t, map[string]any{"c/a.csv": []any{}, "c/c.csv": []any{}}, read(halves[0]), "every other file by name")
	require.Equal(t, map[string]any{"c/b.csv": []any{[]any{"2014-04-01 00:00:00", "2014-04-01 01:00:00"}}}, read(halves[1]), "windows kept as they are")
}

func TestMirrorSeries(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "in.csv"), filepath.Join(dir, "cat", "out.csv")
	require.NoError(t, os.WriteFile(from, []byte("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,4.5\n2014-04-01 00:10:00,2\n"), 0o644))
	require.NoError(t, mirrorSeries(from, to))
	got, err := os.ReadFile(to)
	require.NoError(t, err)
	require.Equal(t, "timestamp,value\n2014-04-01 00:00:00,4.5\n2014-04-01 00:05:00,1\n2014-04-01 00:10:00,3.5\n", string(got), "min+max-v, timestamps as they were")

	require.NoError(t, os.WriteFile(from, []byte("timestamp,value\n2014-04-01 00:00:00,x\n"), 0o644))
	require.ErrorContains(t, mirrorSeries(from, to), "line 2")
	require.NoError(t, os.WriteFile(from, []byte("timestamp,v\n2014-04-01 00:00:00,1\n"), 0o644))
	require.ErrorContains(t, mirrorSeries(from, to), "no value column")
	require.NoError(t, os.WriteFile(from, []byte("timestamp,value\n"), 0o644))
	require.ErrorContains(t, mirrorSeries(from, to), "no rows")
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nab.txt"), []byte("standard 76.6\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fleets.txt"), []byte("precision 0.999\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "skab.txt"), []byte("recall 16/16\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "loco.txt"), []byte("mean 75\n"), 0o644))
	out := filepath.Join(dir, "RESULTS.md")
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	require.NoError(t, writeReport(out, dir, now))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(b), "on 2026-12-06 at commit ")
	require.Contains(t, string(b), "```\nstandard 76.6\n```")
	require.Contains(t, string(b), "```\nprecision 0.999\n```")
	require.NotContains(t, string(b), "Live pipeline", "no live section without live.json")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "live.json"), []byte(`{"precision": 1}`), 0o644))
	require.NoError(t, writeReport(out, dir, now))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(b), "Live pipeline")
	require.NotContains(t, string(b), "Synthetic shapes", "no shapes section without shapes.txt")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "shapes.txt"), []byte("all: 1 of 1 faults found\n"), 0o644))
	require.NoError(t, writeReport(out, dir, now))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(b), "```\nall: 1 of 1 faults found\n```")

	require.NoError(t, os.Remove(filepath.Join(dir, "nab.txt")))
	require.Error(t, writeReport(out, dir, now), "a missing report is an error")
}

func TestScoreSKABRun(t *testing.T) {
	input := "datetime;a;anomaly;changepoint\n" +
		"2020-03-09 10:00:00;1;0;0\n" + // 1: alert opens outside the fault
		"2020-03-09 10:00:01;1;0;0\n" +
		"2020-03-09 10:00:02;1;1;1\n" + // fault starts
		"2020-03-09 10:00:03;1;1;0\n" + // alert opens: 1 s after the start
		"2020-03-09 10:00:04;1;1;0\n" +
		"2020-03-09 10:00:05;1;0;1\n"
	out := "timestamp,a_score,device_score,alert,alert_kind,alert_metrics\n" +
		"x,0,0,1,zscore,a\nx,0,0,0,,\nx,0,0,0,,\nx,0,0,1,zscore,a\nx,0,0,1,zscore,a\nx,0,0,1,zscore,a\n"
	run, err := scoreSKABRun("valve1/0.csv", []byte(input), []byte(out))
	require.NoError(t, err)
	require.Equal(t, skabRun{Name: "valve1/0.csv", Rows: 6, Faulty: true, Detected: true, Delay: 1, FalseOpenings: 1, TP: 2, FP: 2, FN: 1}, run)

	free := "datetime;a\n2020-03-09 10:00:00;1\n2020-03-09 10:00:01;1\n"
	run, err = scoreSKABRun("anomaly-free/anomaly-free.csv", []byte(free), []byte("timestamp,a_score,device_score,alert,alert_kind,alert_metrics\nx,0,0,1,zscore,a\nx,0,0,1,zscore,a\n"))
	require.NoError(t, err)
	require.False(t, run.Faulty)
	require.Equal(t, 1, run.FalseOpenings)

	_, err = scoreSKABRun("x", []byte(free), []byte("timestamp,alert\nx,0\n"))
	require.ErrorContains(t, err, "1 rows replayed for 2")
}

// Each synthetic fault is where it was put: a spike on a daily cycle opens
// an alert at its reading, and the same series without it raises none
// past the warm-up.
func TestPlayShape(t *testing.T) {
	daily := shapes[0]
	require.Equal(t, "daily cycle", daily.name)
	start := 3*1440 + 100
	require.Contains(t, playShape(daily, &shapeFaults[0], start, 1, devShapes.salt), start)
	for _, o := range playShape(daily, nil, 0, 1, devShapes.salt) {
		require.Less(t, o, shapeWarm)
	}
	// The variant set is another generator: other values, same kinds.
	require.Len(t, variantShapes.shapes, len(shapes))
	require.Len(t, variantShapes.faults, len(shapeFaults))
	for i := range shapes {
		require.Equal(t, shapes[i].name, variantShapes.shapes[i].name)
		require.NotEqual(t, shapes[i].value(100, &shapeState{rng: rand.New(rand.NewPCG(1, 1))}), variantShapes.shapes[i].value(100, &shapeState{rng: rand.New(rand.NewPCG(1, 1))}))
	}
}
