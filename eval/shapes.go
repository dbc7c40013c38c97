package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
)

// Synthetic shapes: series of the kinds a deployment meets, each with one
// fault of each kind at a known reading, played through the detector with
// its defaults. Made here by a generator, so they hold nothing held back:
// they show for which kinds of signal and fault the detector works, and
// where it raises false alerts, kind by kind instead of file by file.

// shapeRun is the length of each synthetic series: four days at one
// reading a minute, so the daily profile and the extremes are in use when
// the fault comes (on the fourth day).
const (
	shapeReadings = 4 * 1440
	shapeWarm     = 300 // readings before an alert counts as false
	shapeSeeds    = 3
)

// shape is one kind of signal: its value at (fractional) reading t, its
// centre (what an amplitude change scales around) and amplitude (what
// faults are sized by), and whether it has a beat a rhythm change can
// alter.
type shape struct {
	name     string
	value    func(t float64, st *shapeState) float64
	center   func(t float64, st *shapeState) float64
	amp      float64
	periodic bool
}

// shapeState is a series' random state: its noise and random walk.
type shapeState struct {
	rng  *rand.Rand
	walk float64
}

var shapes = []shape{
	{name: "daily cycle", amp: 5, periodic: true,
		value: func(t float64, st *shapeState) float64 {
			return 20 + 5*math.Sin(2*math.Pi*t/1440) + st.rng.NormFloat64()*0.3
		},
		center: func(float64, *shapeState) float64 { return 20 }},
	{name: "random walk", amp: 2,
		value: func(_ float64, st *shapeState) float64 {
			st.walk += st.rng.NormFloat64() * 0.05
			st.walk -= st.walk * 0.002
			return 50 + st.walk + st.rng.NormFloat64()*0.1
		},
		center: func(_ float64, st *shapeState) float64 { return 50 + st.walk }},
	{name: "machine rhythm", amp: 1, periodic: true,
		value: func(t float64, st *shapeState) float64 {
			return 10 + math.Sin(2*math.Pi*t/20) + st.rng.NormFloat64()*0.1
		},
		center: func(float64, *shapeState) float64 { return 10 }},
	{name: "on/off equipment", amp: 5, periodic: true,
		value: func(t float64, st *shapeState) float64 {
			if math.Mod(t, 60) < 30 {
				return 5 + st.rng.NormFloat64()*0.1
			}
			return st.rng.NormFloat64() * 0.05
		},
		center: func(float64, *shapeState) float64 { return 2.5 }},
	{name: "saw-tooth tank", amp: 10, periodic: true,
		value:  func(t float64, st *shapeState) float64 { return 10*math.Mod(t, 120)/120 + st.rng.NormFloat64()*0.1 },
		center: func(float64, *shapeState) float64 { return 5 }},
	{name: "slow trend", amp: 2,
		value:  func(t float64, st *shapeState) float64 { return 20 + 0.002*t + st.rng.NormFloat64()*0.3 },
		center: func(t float64, _ *shapeState) float64 { return 20 + 0.002*t }},
}

// shapeFaults are the faults injected, each with its length in readings.
var shapeFaults = []struct {
	name string
	len  int
}{
	{"spike", 1}, {"dip", 1}, {"level shift", 120}, {"noise burst", 60}, {"stuck", 120},
	{"amplitude x2", 240}, {"amplitude x0.3", 240}, {"rhythm x2", 240}, {"drift", 240},
}

// playShape plays one series of sh with fault (or none: "") starting at
// reading start, and returns the readings at which alerts opened.
func playShape(sh shape, fault string, start, length int, seed uint64) []int {
	st := &shapeState{rng: rand.New(rand.NewPCG(seed, 0x5a))}
	d := detect.New(detect.DefaultConfig())
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var opens []int
	var out []sensor.Alert
	var stuck float64
	for i := range shapeReadings {
		in := fault != "" && i >= start && i < start+length
		t := float64(i)
		if fault == "rhythm x2" && i >= start {
			t += float64(min(i, start+length) - start) // twice as fast during the fault, in step after it
		}
		v := sh.value(t, st)
		if in {
			k := float64(i-start+1) / float64(length)
			switch fault {
			case "spike":
				v += 1.5 * sh.amp
			case "dip":
				v -= 1.5 * sh.amp
			case "level shift":
				v += 0.8 * sh.amp
			case "noise burst":
				v += st.rng.NormFloat64() * 0.5 * sh.amp
			case "stuck":
				if i == start {
					stuck = v
				}
				v = stuck
			case "amplitude x2", "amplitude x0.3":
				f := 2.0
				if fault == "amplitude x0.3" {
					f = 0.3
				}
				c := sh.center(t, st)
				v = c + f*(v-c)
			case "drift":
				v += k * sh.amp
			}
		}
		r := sensor.Reading{DeviceID: "shape", Site: "eval", TS: t0.Add(time.Duration(i) * time.Minute), Metrics: map[string]float64{"value": v}}
		out, _ = d.Observe(&r, out[:0], nil)
		for _, a := range out {
			if a.State == sensor.StateOpen {
				opens = append(opens, i)
			}
		}
	}
	return opens
}

// evalShapes plays every shape with every fault (and without one) over
// shapeSeeds seeds and writes, per shape, which faults were found (an
// alert opening from the fault's first reading to five after its last)
// and the false alerts (openings past the warm-up and outside the fault
// and the half hour after it) per day of series.
func evalShapes(out string) error {
	f, err := os.Create(filepath.Join(out, "shapes.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(os.Stdout, f)
	fmt.Fprintf(w, "== synthetic shapes: %d seeds of each shape and fault, one reading a minute for %d days, the fault on the fourth day; found = seeds with an alert from the fault's start to 5 readings after its end\n", shapeSeeds, shapeReadings/1440)
	head := fmt.Sprintf("%-18s", "shape")
	for _, fl := range shapeFaults {
		head += fmt.Sprintf(" %*s", max(len(fl.name), 5), fl.name)
	}
	fmt.Fprintf(w, "%s  %s\n", head, "false alerts per day (without fault / with)")
	var found, total int
	var falseNone, falseWith, daysNone, daysWith float64
	for _, sh := range shapes {
		row := fmt.Sprintf("%-18s", sh.name)
		var fn, fw float64
		for seed := range uint64(shapeSeeds) {
			for _, o := range playShape(sh, "", 0, 0, seed) {
				if o >= shapeWarm {
					fn++
				}
			}
		}
		for _, fl := range shapeFaults {
			if fl.name == "rhythm x2" && !sh.periodic {
				row += fmt.Sprintf(" %*s", max(len(fl.name), 5), "-")
				continue
			}
			n := 0
			for seed := range uint64(shapeSeeds) {
				start := 3*1440 + rand.New(rand.NewPCG(seed, 7)).IntN(720)
				hit := false
				for _, o := range playShape(sh, fl.name, start, fl.len, seed) {
					switch {
					case o >= start && o <= start+fl.len+5:
						hit = true
					case o >= shapeWarm && (o < start || o > start+fl.len+30):
						fw++
					}
				}
				if hit {
					n++
				}
				daysWith += shapeReadings / 1440.0
			}
			found += n
			total += shapeSeeds
			row += fmt.Sprintf(" %*s", max(len(fl.name), 5), fmt.Sprintf("%d/%d", n, shapeSeeds))
		}
		days := float64(shapeSeeds) * shapeReadings / 1440
		daysNone += days
		falseNone += fn
		falseWith += fw
		fmt.Fprintf(w, "%s  %.2f / %.2f\n", row, fn/days, fw/(float64(shapeSeeds*countFaults(sh))*shapeReadings/1440))
	}
	fmt.Fprintf(w, "all: %d of %d faults found; false alerts per day %.2f without a fault, %.2f with one\n", found, total, falseNone/daysNone, falseWith/daysWith)
	return nil
}

// countFaults is how many faults apply to sh.
func countFaults(sh shape) int {
	n := 0
	for _, fl := range shapeFaults {
		if fl.name != "rhythm x2" || sh.periodic {
			n++
		}
	}
	return n
}
