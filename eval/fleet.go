package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/eval/quality"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/simulator"
)

// fleetStart is the virtual start of every offline fleet, fixed so runs
// are comparable (the live evaluation starts a day before the wall clock).
var fleetStart = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// fleetRun is one offline fleet configuration.
type fleetRun struct {
	Name        string
	Interval    time.Duration
	Count       int64   // readings, dropouts included
	AnomalyRate float64 // per reading of a device without an anomaly
}

// fleets: the live evaluation's fleet (60 devices × 800 readings, 1 s
// apart: about 13 minutes, anomalies twice as often as the simulator's
// default to have enough of them), a fleet over three days of readings
// one minute apart, long enough for the daily cycles to be learned, at the
// simulator's default anomaly rate, and the same over a week, five days of
// it with the extremes armed.
var fleets = []fleetRun{
	{Name: "13 min at 1 s", Interval: time.Second, Count: 60 * 800, AnomalyRate: 0.004},
	{Name: "3 days at 1 min", Interval: time.Minute, Count: 60 * 3 * 1440, AnomalyRate: 0.002},
	{Name: "7 days at 1 min", Interval: time.Minute, Count: 60 * 7 * 1440, AnomalyRate: 0.002},
}

// evalFleets plays the simulator's fleets offline (no broker: the readings
// and anomalies the live simulator publishes for the same seed and start)
// through the live detector with its defaults, and scores the alerts on
// the ground truth with the live evaluation's rules.
func evalFleets(seeds []uint64, out string) error {
	f, err := os.Create(filepath.Join(out, "fleets.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(os.Stdout, f)
	results := map[string]quality.Quality{}
	for _, run := range fleets {
		fmt.Fprintf(w, "== simulated fleets offline: 60 devices, %s, anomaly rate %g, seeds %v\n", run.Name, run.AnomalyRate, seeds)
		var pooled quality.Quality
		for _, seed := range seeds {
			var sim simulator.Config
			sim.RegisterFlags(flag.NewFlagSet("simulator", flag.ContinueOnError)) // the defaults
			sim.Devices, sim.Count, sim.Interval, sim.Seed = 60, run.Count, run.Interval, seed
			sim.AnomalyRate, sim.AnomalyWarmup = run.AnomalyRate, 100
			opened, truth, err := quality.Offline(sim, fleetStart, detect.DefaultConfig())
			if err != nil {
				return err
			}
			q := quality.Score(truth, opened, run.Interval)
			fmt.Fprintf(w, "seed %-4d %s\n", seed, q)
			pooled = pooled.Add(q)
		}
		fmt.Fprintf(w, "all       %s\n\n", pooled)
		results[run.Name] = pooled
	}
	b, _ := json.MarshalIndent(results, "", "  ")
	return os.WriteFile(filepath.Join(out, "fleets.json"), b, 0o644)
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: %w", p, err)
		}
		out = append(out, n)
	}
	return out, nil
}
