package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// A setting is one point of the grid the leave-one-category-out procedure
// chooses from: flags passed to `sensorflow replay`.
type setting struct {
	name string
	args []string
}

// locoGrid is every setting the procedure may choose, per fold: which
// scorers are on, and the detector's main parameters. Adding a switch for a
// scorer or a rule here puts its keeping or dropping under the same test.
func locoGrid() []setting {
	var out []setting
	for _, extremes := range []string{"true", "false"} {
		for _, alpha := range []string{"0.002", "0.005", "0.01"} {
			for _, z := range []string{"4", "5", "6"} {
				out = append(out, setting{
					name: fmt.Sprintf("extremes=%s alpha=%s z=%s", extremes, alpha, z),
					args: []string{"-detect.extremes=" + extremes, "-detect.alpha=" + alpha, "-detect.z=" + z},
				})
			}
		}
	}
	return out
}

// locoFolds are NAB's categories held out in turn. artificialNoAnomaly has
// no window, so it has no normalised score alone: it is held out with
// artificialWithAnomaly.
var locoFolds = [][]string{
	{"artificialNoAnomaly", "artificialWithAnomaly"},
	{"realAWSCloudwatch"},
	{"realAdExchange"},
	{"realTweets"},
}

// nabResult is the part of the scorer's JSON output the procedure reads.
type nabResult struct {
	Detector string  `json:"detector"`
	Profile  string  `json:"profile"`
	Score    float64 `json:"score"`
	Found    int     `json:"windows_detected"`
	Windows  int     `json:"windows"`
	FP       int     `json:"fp"`
}

// locoFold is one held-out fold's outcome.
type locoFold struct {
	Held     []string
	Chosen   string  // the setting chosen on the other folds
	Tuned    float64 // its standard score on the other folds (in-sample there)
	Score    float64 // standard score on the held-out fold, threshold chosen on the others
	LowFP    float64
	LowFN    float64
	Found    int
	Windows  int
	Defaults float64 // the defaults on the held-out fold, threshold chosen on the others
}

// evalLOCO measures generalisation on NAB the way unseen series would:
// every setting of the grid replays every series; then, for each fold, the
// setting and the threshold are chosen on the other folds only, and the
// held-out fold is scored with them. The mean over the folds is the
// headline; the defaults' score on each held-out fold (only the threshold
// chosen elsewhere) stands beside it.
func evalLOCO(nab, scorer, bin, out string) ([]locoFold, error) {
	files, err := filepath.Glob(filepath.Join(nab, "data", "*", "*.csv"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no NAB series under %s/data (%v)", nab, err)
	}
	results := filepath.Join(out, "loco")
	if err := os.RemoveAll(results); err != nil {
		return nil, err
	}
	grid := locoGrid()
	detectors := make([]string, len(grid))
	var jobs []replayJob
	for i, s := range grid {
		detectors[i] = fmt.Sprintf("grid%02d", i)
		for _, f := range files {
			jobs = append(jobs, replayJob{s.args, f, detectors[i], false})
		}
	}
	if err := replayAll(bin, results, jobs); err != nil {
		return nil, err
	}
	defaults := slices.IndexFunc(grid, func(s setting) bool {
		return s.name == "extremes=true alpha=0.005 z=5"
	})
	var folds []locoFold
	for _, held := range locoFolds {
		var tune []string
		for _, f := range locoFolds {
			if !slices.Equal(f, held) {
				tune = append(tune, f...)
			}
		}
		// Choose the setting on the other folds (threshold optimised there).
		in, err := nabScore(scorer, nab, results, detectors, "-optimize", "-categories", strings.Join(tune, ","))
		if err != nil {
			return nil, err
		}
		best, bestScore := -1, 0.0
		for i, d := range detectors {
			if r, ok := in[d+"/standard"]; ok && (best < 0 || r.Score > bestScore) {
				best, bestScore = i, r.Score
			}
		}
		chosen := []string{detectors[best]}
		if defaults >= 0 && defaults != best {
			chosen = append(chosen, detectors[defaults])
		}
		hr, err := nabScore(scorer, nab, results, chosen, "-optimize", "-categories", strings.Join(held, ","), "-tune-categories", strings.Join(tune, ","))
		if err != nil {
			return nil, err
		}
		fold := locoFold{Held: held, Chosen: grid[best].name, Tuned: bestScore}
		r := hr[detectors[best]+"/standard"]
		fold.Score, fold.Found, fold.Windows = r.Score, r.Found, r.Windows
		fold.LowFP = hr[detectors[best]+"/reward_low_FP_rate"].Score
		fold.LowFN = hr[detectors[best]+"/reward_low_FN_rate"].Score
		fold.Defaults = fold.Score
		if defaults >= 0 {
			fold.Defaults = hr[detectors[defaults]+"/standard"].Score
		}
		folds = append(folds, fold)
	}
	return folds, writeLOCO(folds, grid, out)
}

// nabScore runs the NAB scorer over detectors and returns its results by
// "detector/profile".
func nabScore(scorer, nab, results string, detectors []string, args ...string) (map[string]nabResult, error) {
	cmd := exec.Command("go", append([]string{"run", ".", "-nab", nab, "-results", results, "-json", "-detector", strings.Join(detectors, ",")}, args...)...)
	cmd.Dir = scorer
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nab scorer %v: %w", args, err)
	}
	var rs []nabResult
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("nab scorer output: %w", err)
	}
	out := make(map[string]nabResult, len(rs))
	for _, r := range rs {
		out[r.Detector+"/"+r.Profile] = r
	}
	return out, nil
}

// writeLOCO prints the folds and writes them to out/loco.txt.
func writeLOCO(folds []locoFold, grid []setting, out string) error {
	f, err := os.Create(filepath.Join(out, "loco.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(os.Stdout, f)
	fmt.Fprintf(w, "== NAB leave one category out: the setting (of %d: scorers on or off, alpha, z) and the threshold chosen on the other folds, scored on the held-out one\n", len(grid))
	fmt.Fprintf(w, "%-44s %8s %8s %8s %9s %9s  %s\n", "held out", "standard", "low FP", "low FN", "windows", "defaults", "chosen on the others (their in-sample score)")
	var sum, worst, sumDef float64
	for i, fo := range folds {
		name := strings.Join(fo.Held, "+")
		fmt.Fprintf(w, "%-44s %8.1f %8.1f %8.1f %5d/%-3d %9.1f  %s (%.1f)\n", name, fo.Score, fo.LowFP, fo.LowFN, fo.Found, fo.Windows, fo.Defaults, fo.Chosen, fo.Tuned)
		sum += fo.Score
		sumDef += fo.Defaults
		if i == 0 || fo.Score < worst {
			worst = fo.Score
		}
	}
	n := float64(len(folds))
	fmt.Fprintf(w, "mean %.1f, worst fold %.1f (the defaults with only the threshold held out: mean %.1f)\n", sum/n, worst, sumDef/n)
	return nil
}
