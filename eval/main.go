// Command eval measures detection quality on the Numenta Anomaly Benchmark:
// it runs `sensorflow replay` (the live detector) over every NAB series,
// lays the results out as NAB does, and scores them with the NAB scorer:
// the anomaly_score with NAB's threshold optimization, and the alert
// column, which is what the live processor would have raised, with the
// threshold fixed at 1; then the anomaly_score on each half of the series,
// and on every series mirrored (rises become falls). Then it plays
// simulated fleets offline through the detector and scores the alerts on
// the simulator's ground truth.
//
// Run it through `make eval`, which then measures the live pipeline on the
// simulator's ground truth (e2e TestDetectionQuality).
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	nab := flag.String("nab", "../shared/nab", "NAB root (data/, labels/, config/).")
	scorer := flag.String("scorer", "../shared/tools/nabscore", "Directory of the NAB scorer (a Go main package).")
	bin := flag.String("bin", "bin/sensorflow", "The sensorflow binary.")
	out := flag.String("out", "out/eval", "Directory for the results and the report.")
	rules := flag.String("rules", "", "Detection rules file passed to replay.")
	loco := flag.Bool("loco", true, "Score NAB leave one category out: per fold, the setting of a grid and the threshold chosen on the other categories.")
	skab := flag.String("skab", "../shared/skab", "SKAB root (valve1/, anomaly-free/): each file replayed as one device (empty: skip).")
	report := flag.String("report", "", "Also write every figure, with the date and commit, to this Markdown file (make eval: eval/RESULTS.md); includes live.json from -out when the live run wrote one.")
	seeds := flag.String("fleet-seeds", "11,23,42,7,99", "Seeds of the simulated fleets played offline through the detector (empty: none).")
	synth := flag.Bool("shapes", true, "Play synthetic series of several shapes (daily cycle, random walk, machine rhythm, on/off, saw-tooth, trend), each with each kind of fault, through the detector.")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./eval [flags]\n\nScores the live detector on NAB through `sensorflow replay`, then on simulated fleets\nplayed offline (precision and recall against the simulator's ground truth).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	seedList, err := parseSeeds(*seeds)
	if err == nil {
		err = run(*nab, *scorer, *bin, *out, *rules)
	}
	if err == nil && *loco {
		var abs [4]string
		for i, p := range []string{*nab, *scorer, *bin, *out} {
			if abs[i], err = filepath.Abs(p); err != nil {
				break
			}
		}
		if err == nil {
			_, err = evalLOCO(abs[0], abs[1], abs[2], abs[3])
		}
	}
	if err == nil && *skab != "" {
		var abs string
		if abs, err = filepath.Abs(*bin); err == nil {
			_, err = evalSKAB(*skab, abs, *out)
		}
	}
	if err == nil && len(seedList) > 0 {
		err = evalFleets(seedList, *out)
	}
	if err == nil && *synth {
		err = evalShapes(*out)
	}
	if err == nil && *report != "" {
		err = writeReport(*report, *out, time.Now())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "eval:", err)
		os.Exit(1)
	}
}

func run(nab, scorer, bin, out, rules string) error {
	for _, p := range []*string{&nab, &scorer, &bin, &out} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	files, err := filepath.Glob(filepath.Join(nab, "data", "*", "*.csv"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no NAB series under %s/data (%v)", nab, err)
	}
	results := filepath.Join(out, "results")
	if err := os.RemoveAll(results); err != nil {
		return err
	}
	// The same series mirrored (v -> min+max-v) show whether the detector
	// favours one direction: rises become falls, and the labels still hold.
	mirrored := filepath.Join(out, "mirrored")
	if err := mirrorNAB(nab, files, mirrored); err != nil {
		return err
	}
	var extra []string
	if rules != "" {
		extra = []string{"-rules", rules}
	}
	// Replay every series, and every mirrored one.
	var jobs []replayJob
	for _, f := range files {
		rel, err := filepath.Rel(filepath.Join(nab, "data"), f)
		if err != nil {
			return err
		}
		jobs = append(jobs, replayJob{extra, f, "sensorflow", true}, replayJob{extra, filepath.Join(mirrored, "data", rel), "sensorflow_mirrored", false})
	}
	if err := replayAll(bin, results, jobs); err != nil {
		return err
	}
	fmt.Printf("replayed %d NAB series, and each mirrored, with %s replay\n\n", len(files), bin)
	report, err := os.Create(filepath.Join(out, "nab.txt"))
	if err != nil {
		return err
	}
	defer report.Close()
	w := io.MultiWriter(os.Stdout, report)
	// The anomaly_score is also scored on each half of the series (every
	// other file by name): a change tuned on all of them that helps only
	// one half is likely fitted to those files, not to the kind of signal.
	halves, err := splitLabels(filepath.Join(nab, "labels", "combined_windows.json"), out)
	if err != nil {
		return err
	}
	for _, s := range []struct {
		title, nab string
		args       []string
	}{
		{"anomaly_score, threshold optimized per profile (NAB's method)", nab, []string{"-detector", "sensorflow", "-optimize"}},
		{"alert openings (where the live processor opens an alert), threshold 1", nab, []string{"-detector", "sensorflow_live", "-threshold", "1"}},
		{"anomaly_score, threshold optimized, on half A of the series (every other file by name)", nab, []string{"-windows", halves[0], "-detector", "sensorflow", "-optimize"}},
		{"anomaly_score, threshold optimized, on half B of the series (every other file by name)", nab, []string{"-windows", halves[1], "-detector", "sensorflow", "-optimize"}},
		{"anomaly_score, threshold optimized, every series mirrored (value -> min+max-value: rises become falls)", mirrored, []string{"-detector", "sensorflow_mirrored", "-optimize"}},
	} {
		fmt.Fprintf(w, "== %s\n", s.title)
		cmd := exec.Command("go", append([]string{"run", ".", "-nab", s.nab, "-results", results}, s.args...)...)
		cmd.Dir = scorer
		cmd.Stdout, cmd.Stderr = w, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("nab scorer: %w", err)
		}
		fmt.Fprintln(w)
	}
	fmt.Printf("report: %s\n", report.Name())
	return nil
}

// splitLabels writes NAB's label file in two halves, every other series
// by name, into dir, and returns their paths.
func splitLabels(labels, dir string) ([2]string, error) {
	var out [2]string
	b, err := os.ReadFile(labels)
	if err != nil {
		return out, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return out, fmt.Errorf("%s: %w", labels, err)
	}
	names := slices.Sorted(maps.Keys(all))
	for h := range out {
		half := map[string]json.RawMessage{}
		for i := h; i < len(names); i += 2 {
			half[names[i]] = all[names[i]]
		}
		out[h] = filepath.Join(dir, fmt.Sprintf("labels-%c.json", 'a'+h))
		b, err := json.MarshalIndent(half, "", "  ")
		if err == nil {
			err = os.WriteFile(out[h], b, 0o644)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// replayJob is one series to replay with extra flags as detector.
type replayJob struct {
	extra          []string
	file, detector string
	alerts         bool
}

// replayAll runs the jobs, two at a time, and returns the first error.
func replayAll(bin, results string, jobs []replayJob) error {
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := replay(bin, j.extra, j.file, results, j.detector, j.alerts); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// replay scores one series into results/<detector>/<category>/ and, if
// alerts, writes the alert column as the score into
// results/<detector>_live/<category>/.
func replay(bin string, extra []string, file, results, detector string, alerts bool) error {
	category := filepath.Base(filepath.Dir(file))
	name := filepath.Base(file)
	scored := filepath.Join(results, detector, category, detector+"_"+name)
	if err := os.MkdirAll(filepath.Dir(scored), 0o755); err != nil {
		return err
	}
	args := append([]string{"replay", "-input", file, "-output", scored}, extra...)
	if msg, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("replay %s: %v: %s", file, err, msg)
	}
	if !alerts {
		return nil
	}
	live := filepath.Join(results, detector+"_live", category, detector+"_live_"+name)
	if err := os.MkdirAll(filepath.Dir(live), 0o755); err != nil {
		return err
	}
	return alertsAsScores(scored, live)
}

// alertsAsScores copies a replay output with anomaly_score := 1 where an
// alert opens, else 0.
func alertsAsScores(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	outF, err := os.Create(to)
	if err != nil {
		return err
	}
	r := csv.NewReader(bufio.NewReader(in))
	bw := bufio.NewWriter(outF)
	cw := csv.NewWriter(bw)
	header, err := r.Read()
	if err != nil {
		outF.Close()
		return err
	}
	si, ai := index(header, "anomaly_score"), index(header, "alert")
	if si < 0 || ai < 0 {
		outF.Close()
		return fmt.Errorf("%s: no anomaly_score and alert columns", from)
	}
	_ = cw.Write(header)
	open := false
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			outF.Close()
			return err
		}
		// An alert lasts as long as its fault; NAB rewards onsets, so
		// the score is 1 where an alert opens.
		now := rec[ai] == "1"
		rec[si] = "0"
		if now && !open {
			rec[si] = "1"
		}
		open = now
		_ = cw.Write(rec)
	}
	cw.Flush()
	if err := errors.Join(cw.Error(), bw.Flush()); err != nil {
		outF.Close()
		return err
	}
	return outF.Close()
}

// mirrorNAB writes a NAB root under dir whose series are files (under
// nab/data) with each value v replaced by min+max-v, the same timestamps,
// and NAB's labels and profiles.
func mirrorNAB(nab string, files []string, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, f := range []string{filepath.Join("labels", "combined_windows.json"), filepath.Join("config", "profiles.json")} {
		b, err := os.ReadFile(filepath.Join(nab, f))
		if err == nil {
			err = os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		if err != nil {
			return err
		}
	}
	for _, f := range files {
		rel, err := filepath.Rel(filepath.Join(nab, "data"), f)
		if err != nil {
			return err
		}
		if err := mirrorSeries(f, filepath.Join(dir, "data", rel)); err != nil {
			return err
		}
	}
	return nil
}

// mirrorSeries copies a timestamp,value CSV with each value v replaced by
// min+max-v.
func mirrorSeries(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	recs, err := csv.NewReader(bufio.NewReader(in)).ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	if len(recs) < 2 {
		return fmt.Errorf("%s: no rows", from)
	}
	vi := index(recs[0], "value")
	if vi < 0 {
		return fmt.Errorf("%s: no value column", from)
	}
	vals := make([]float64, len(recs)-1)
	for i, r := range recs[1:] {
		if vals[i], err = strconv.ParseFloat(strings.TrimSpace(r[vi]), 64); err != nil {
			return fmt.Errorf("%s line %d: %w", from, i+2, err)
		}
	}
	lo, hi := slices.Min(vals), slices.Max(vals)
	for i, r := range recs[1:] {
		r[vi] = strconv.FormatFloat(lo+hi-vals[i], 'g', -1, 64)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	outF, err := os.Create(to)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(outF)
	if err := errors.Join(cw.WriteAll(recs), outF.Close()); err != nil {
		return fmt.Errorf("%s: %w", to, err)
	}
	return nil
}

func index(header []string, name string) int {
	for i, h := range header {
		if strings.TrimSpace(h) == name {
			return i
		}
	}
	return -1
}
