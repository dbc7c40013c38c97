package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// skabRun is one SKAB file scored as one device.
type skabRun struct {
	Name          string
	Rows          int
	Faulty        bool    // the file has a labelled faulty period
	Detected      bool    // an alert opened inside it
	Delay         float64 // seconds from its start to that opening
	FalseOpenings int     // alert openings outside it
	TP, FP, FN    int     // rows: alert open vs the anomaly label
}

// skabScore is the pooled SKAB result.
type skabScore struct {
	Runs          []skabRun
	Recall        float64 // faulty runs with an alert inside the fault
	MedianDelay   float64 // seconds, over detected runs
	FalseOpenings int     // outside the faults, anomaly-free run included
	FreeOpenings  int     // on the anomaly-free run alone
	F1            float64 // point-wise, alert open vs label, faulty runs pooled
}

// evalSKAB replays every SKAB file through `sensorflow replay` as one device
// (all its metrics; the label columns ignored) and scores the device's
// alert state against the labels: event recall, delay, false openings and
// SKAB's point-wise F1.
func evalSKAB(skab, bin, out string) (skabScore, error) {
	var score skabScore
	files, err := filepath.Glob(filepath.Join(skab, "*", "*.csv"))
	if err != nil || len(files) == 0 {
		return score, fmt.Errorf("no SKAB runs under %s (%v)", skab, err)
	}
	slices.SortFunc(files, func(a, b string) int { return strings.Compare(skabName(a, skab), skabName(b, skab)) })
	var delays []float64
	var tp, fp, fn, faulty, detected int
	for _, f := range files {
		name := skabName(f, skab)
		cmd := exec.Command(bin, "replay", "-input", f, "-ignore", "anomaly,changepoint", "-device", "skab-"+strings.NewReplacer("/", "-", ".csv", "").Replace(name))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return score, fmt.Errorf("replaying %s: %w: %s", f, err, stderr.String())
		}
		labels, err := os.ReadFile(f)
		if err != nil {
			return score, err
		}
		run, err := scoreSKABRun(name, labels, stdout.Bytes())
		if err != nil {
			return score, fmt.Errorf("%s: %w", f, err)
		}
		score.Runs = append(score.Runs, run)
		score.FalseOpenings += run.FalseOpenings
		if !run.Faulty {
			score.FreeOpenings += run.FalseOpenings
			continue
		}
		faulty++
		tp, fp, fn = tp+run.TP, fp+run.FP, fn+run.FN
		if run.Detected {
			detected++
			delays = append(delays, run.Delay)
		}
	}
	if faulty > 0 {
		score.Recall = float64(detected) / float64(faulty)
	}
	score.MedianDelay = median(delays)
	if tp > 0 {
		p, r := float64(tp)/float64(tp+fp), float64(tp)/float64(tp+fn)
		score.F1 = 2 * p * r / (p + r)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return score, err
	}
	rep, err := os.Create(filepath.Join(out, "skab.txt"))
	if err != nil {
		return score, err
	}
	defer rep.Close()
	w := io.MultiWriter(os.Stdout, rep)
	fmt.Fprintf(w, "== SKAB: each file one device (all eight metrics), the device's alert state against the labels\n")
	for _, r := range score.Runs {
		if !r.Faulty {
			fmt.Fprintf(w, "%-26s anomaly-free, %d rows: %d alert openings\n", r.Name, r.Rows, r.FalseOpenings)
			continue
		}
		found := "missed"
		if r.Detected {
			found = fmt.Sprintf("found after %.0f s", r.Delay)
		}
		fmt.Fprintf(w, "%-26s %s, %d false openings, alert open on %d of %d faulty rows and %d normal rows\n", r.Name, found, r.FalseOpenings, r.TP, r.TP+r.FN, r.FP)
	}
	fmt.Fprintf(w, "all: recall %d/%d, median delay %.0f s, false openings %d (anomaly-free run: %d), point-wise F1 %.3f\n",
		detected, faulty, score.MedianDelay, score.FalseOpenings, score.FreeOpenings, score.F1)
	return score, nil
}

func skabName(f, root string) string {
	rel, err := filepath.Rel(root, f)
	if err != nil {
		return f
	}
	return filepath.ToSlash(rel)
}

// scoreSKABRun compares one replay's alert column with the file's anomaly
// labels, row by row (replay writes one row per input row, in order).
func scoreSKABRun(name string, input, replayed []byte) (skabRun, error) {
	run := skabRun{Name: name}
	in := csv.NewReader(bytes.NewReader(input))
	in.Comma = ';'
	rows, err := in.ReadAll()
	if err != nil {
		return run, err
	}
	outRows, err := csv.NewReader(bytes.NewReader(replayed)).ReadAll()
	if err != nil {
		return run, fmt.Errorf("replay output: %w", err)
	}
	if len(outRows) != len(rows) || len(rows) < 2 {
		return run, fmt.Errorf("%d rows replayed for %d", len(outRows)-1, len(rows)-1)
	}
	li, ai := slices.Index(rows[0], "anomaly"), slices.Index(outRows[0], "alert")
	if ai < 0 {
		return run, fmt.Errorf("replay output has no alert column")
	}
	run.Faulty = li >= 0
	run.Rows = len(rows) - 1
	var start time.Time
	inFault, wasOpen := false, false
	for i := 1; i < len(rows); i++ {
		label := run.Faulty && rows[i][li] != "" && rows[i][li] != "0" && rows[i][li] != "0.0"
		open := outRows[i][ai] == "1"
		ts, err := time.Parse("2006-01-02 15:04:05", rows[i][0])
		if err != nil {
			return run, err
		}
		if label && !inFault {
			start = ts
		}
		inFault = label
		opening := open && !wasOpen
		wasOpen = open
		switch {
		case label && open:
			run.TP++
		case label:
			run.FN++
		case open:
			run.FP++
		}
		if !opening {
			continue
		}
		if label {
			if !run.Detected {
				run.Detected, run.Delay = true, ts.Sub(start).Seconds()
			}
		} else {
			run.FalseOpenings++
		}
	}
	return run, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
