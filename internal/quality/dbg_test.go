package quality

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/simulator"
)

func TestDbgMisses(t *testing.T) {
	var sim simulator.Config
	sim.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	iv, _ := time.ParseDuration(os.Getenv("IV"))
	if iv == 0 {
		iv = time.Minute
	}
	seed, _ := strconv.ParseUint(os.Getenv("SEED"), 10, 64)
	sim.Devices, sim.Interval, sim.Seed, sim.AnomalyRate, sim.AnomalyWarmup = 60, iv, seed, 0.002, 100
	sim.Count = 60 * 3 * 1440
	if iv == time.Second {
		sim.Count = 60 * 800
		sim.AnomalyRate = 0.004
	}
	start := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	opened, truth, _ := Offline(sim, start, detect.DefaultConfig())
	tol := 5 * iv
	matches := func(g simulator.GroundTruth, a sensor.Alert) bool {
		return a.DeviceID == g.DeviceID && (g.Metric == "*" || a.Metric == g.Metric) &&
			!a.StartedAt.Before(g.Start) && !a.StartedAt.After(g.End.Add(tol))
	}
	miss := map[string]int{}
	for _, g := range truth {
		ok := false
		for _, a := range opened {
			if matches(g, a) {
				ok = true
			}
		}
		if !ok {
			miss[g.Kind+" "+g.Metric]++
			if os.Getenv("V") == g.Kind {
				fmt.Printf("MISS %s %s %s %s (%.0f h)\n", g.Kind, g.DeviceID, g.Metric, g.Start.Format("01-02 15:04:05"), g.Start.Sub(start).Hours())
			}
		}
	}
	fa := map[string]int{}
	for _, a := range opened {
		ok := false
		for _, g := range truth {
			if matches(g, a) {
				ok = true
			}
		}
		if !ok {
			fa[a.Kind+" "+a.Metric]++
			if os.Getenv("F") != "" {
				fmt.Printf("FALSE %s %s %s %s (%.0f h) score %.2f v %.3f [%.3f %.3f]\n", a.Kind, a.DeviceID, a.Metric, a.StartedAt.Format("01-02 15:04:05"), a.StartedAt.Sub(start).Hours(), a.Score, a.Value, a.ExpectedLow, a.ExpectedHigh)
			}
		}
	}
	pr := func(m map[string]int) {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			fmt.Printf("  %-30s %d\n", k, m[k])
		}
	}
	fmt.Println("misses:")
	pr(miss)
	fmt.Println("false:")
	pr(fa)
}

func TestDbgTrace(t *testing.T) {
	var sim simulator.Config
	sim.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	iv, _ := time.ParseDuration(os.Getenv("IV"))
	if iv == 0 {
		iv = time.Minute
	}
	seed, _ := strconv.ParseUint(os.Getenv("SEED"), 10, 64)
	sim.Devices, sim.Interval, sim.Seed, sim.AnomalyRate, sim.AnomalyWarmup = 60, iv, seed, 0.002, 100
	sim.Count = 60 * 3 * 1440
	if iv == time.Second {
		sim.Count = 60 * 800
		sim.AnomalyRate = 0.004
	}
	start := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	dev, metric := os.Getenv("DEV"), os.Getenv("METRIC")
	from, _ := time.Parse("01-02 15:04:05", os.Getenv("AT"))
	from = from.AddDate(2026, 0, 0)
	det := detect.New(detect.DefaultConfig())
	var ev []sensor.Alert
	var sc []float64
	truth, _ := simulator.Play(sim, start, func(r *sensor.Reading) {
		ev, sc = det.Observe(r, ev[:0], sc[:0])
		if r.DeviceID != dev {
			return
		}
		if d := r.TS.Sub(from); d < -20*iv || d > 40*iv {
			return
		}
		names := r.AppendMetricNames(nil)
		for i, n := range names {
			if n == metric {
				fmt.Printf("%s v=%.4f score=%.3f ev=%d %s\n", r.TS.Format("15:04:05"), r.Metrics[n], sc[i], len(ev), det.DebugSeries(dev, metric))
			}
		}
	})
	for _, g := range truth {
		if g.DeviceID == dev {
			fmt.Println(g)
		}
	}
}
