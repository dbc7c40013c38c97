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

// The kinds of signal, each made from its parameters.

// cycle swings amp around level with period (readings) and phase, plus noise.
func cycle(name string, level, amp, period, phase, noise float64) shape {
	return shape{name: name, amp: amp, periodic: true,
		value: func(t float64, st *shapeState) float64 {
			return level + amp*math.Sin(2*math.Pi*t/period+phase) + st.rng.NormFloat64()*noise
		},
		center: func(float64, *shapeState) float64 { return level }}
}

// walk wanders around level by steps of spread step, pulled back by pull
// each reading, read with noise; faults are sized by amp.
func walk(level, step, pull, noise, amp float64) shape {
	return shape{name: "random walk", amp: amp,
		value: func(_ float64, st *shapeState) float64 {
			st.walk += st.rng.NormFloat64() * step
			st.walk -= st.walk * pull
			return level + st.walk + st.rng.NormFloat64()*noise
		},
		center: func(_ float64, st *shapeState) float64 { return level + st.walk }}
}

// onOff is on (with noise onNoise) for the first onFor readings of every
// period and off (offNoise) for the rest; amplitude changes scale around
// center, faults are sized by amp.
func onOff(on, off, period, onFor, onNoise, offNoise, center, amp float64) shape {
	return shape{name: "on/off equipment", amp: amp, periodic: true,
		value: func(t float64, st *shapeState) float64 {
			if math.Mod(t, period) < onFor {
				return on + st.rng.NormFloat64()*onNoise
			}
			return off + st.rng.NormFloat64()*offNoise
		},
		center: func(float64, *shapeState) float64 { return center }}
}

// saw fills from low by height over period readings and empties at once.
func saw(low, height, period, noise float64) shape {
	return shape{name: "saw-tooth tank", amp: height, periodic: true,
		value: func(t float64, st *shapeState) float64 {
			return low + height*math.Mod(t, period)/period + st.rng.NormFloat64()*noise
		},
		center: func(float64, *shapeState) float64 { return low + height/2 }}
}

// trend moves from level by slope a reading, with noise; faults are sized
// by amp.
func trend(level, slope, noise, amp float64) shape {
	return shape{name: "slow trend", amp: amp,
		value:  func(t float64, st *shapeState) float64 { return level + slope*t + st.rng.NormFloat64()*noise },
		center: func(t float64, _ *shapeState) float64 { return level + slope*t }}
}

var shapes = []shape{
	cycle("daily cycle", 20, 5, 1440, 0, 0.3),
	walk(50, 0.05, 0.002, 0.1, 2),
	cycle("machine rhythm", 10, 1, 20, 0, 0.1),
	onOff(5, 0, 60, 30, 0.1, 0.05, 2.5, 5),
	saw(0, 10, 120, 0.1),
	trend(20, 0.002, 0.3, 2),
}

// shapeFault is one fault: its kind, its size (in the shape's amplitude
// for spike, dip, level shift, noise burst and drift; the factor for an
// amplitude or rhythm change) and its length in readings.
type shapeFault struct {
	name string
	kind string
	size float64
	len  int
}

// shapeSet is a table of shapes, faults and seeds.
type shapeSet struct {
	title  string
	shapes []shape
	faults []shapeFault
	seeds  []uint64
	salt   uint64 // of the noise
	at     uint64 // of the fault's start
}

// shapeFaults are the faults injected in the development set.
var shapeFaults = []shapeFault{
	{"spike", "spike", 1.5, 1}, {"dip", "spike", -1.5, 1}, {"level shift", "shift", 0.8, 120}, {"noise burst", "burst", 0.5, 60},
	{"stuck", "stuck", 0, 120}, {"amplitude x2", "amplitude", 2, 240}, {"amplitude x0.3", "amplitude", 0.3, 240},
	{"rhythm x2", "rhythm", 2, 240}, {"drift", "drift", 1, 240},
}

// devShapes is the set the detector's settings may be chosen on.
var devShapes = shapeSet{title: "synthetic shapes", shapes: shapes, faults: shapeFaults, seeds: []uint64{0, 1, 2}, salt: 0x5a, at: 7}

// variantShapes has other levels, noises, periods (one, 150 minutes, that
// does not divide the day), fault sizes and seeds. It is never used to
// choose a setting: it shows whether what was chosen on devShapes holds
// for a kind of signal rather than for those series.
var variantShapes = shapeSet{title: "synthetic shapes, variant (never used to choose settings)", salt: 0x77, at: 9,
	seeds: []uint64{20, 21, 22, 23},
	faults: []shapeFault{
		{"spike", "spike", 1.3, 1}, {"dip", "spike", -1.3, 1}, {"level shift", "shift", -0.7, 180}, {"noise burst", "burst", 0.4, 180},
		{"stuck", "stuck", 0, 180}, {"amplitude x1.7", "amplitude", 1.7, 180}, {"amplitude x0.4", "amplitude", 0.4, 180},
		{"rhythm x1.6", "rhythm", 1.6, 180}, {"drift", "drift", -1, 180},
	},
	shapes: []shape{
		cycle("daily cycle", 40, 3, 1440, 1, 0.4),
		walk(10, 0.08, 0.001, 0.15, 3),
		cycle("machine rhythm", 5, 2, 33, 0, 0.2),
		onOff(8, 0.5, 90, 35, 0.2, 0.05, 4, 8),
		saw(2, 6, 150, 0.1),
		trend(100, -0.003, 0.2, 1),
	},
}

// playShape plays one series of sh with fault (or none: nil) starting at
// reading start, with the noise of seed and salt, and returns the readings
// at which alerts opened.
func playShape(sh shape, fault *shapeFault, start int, seed, salt uint64) []int {
	st := &shapeState{rng: rand.New(rand.NewPCG(seed, salt))}
	d := detect.New(detect.DefaultConfig())
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var opens []int
	var out []sensor.Alert
	var stuck float64
	for i := range shapeReadings {
		in := fault != nil && i >= start && i < start+fault.len
		t := float64(i)
		if fault != nil && fault.kind == "rhythm" && i >= start {
			// faster during the fault, in step after it
			t += (fault.size - 1) * float64(min(i, start+fault.len)-start)
		}
		v := sh.value(t, st)
		if in {
			k := float64(i-start+1) / float64(fault.len)
			switch fault.kind {
			case "spike":
				v += fault.size * sh.amp
			case "shift":
				v += fault.size * sh.amp
			case "burst":
				v += st.rng.NormFloat64() * fault.size * sh.amp
			case "stuck":
				if i == start {
					stuck = v
				}
				v = stuck
			case "amplitude":
				c := sh.center(t, st)
				v = c + fault.size*(v-c)
			case "drift":
				v += k * fault.size * sh.amp
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

// evalShapes plays both shape sets and writes their tables to shapes.txt.
func evalShapes(out string) error {
	f, err := os.Create(filepath.Join(out, "shapes.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(os.Stdout, f)
	for i, set := range []shapeSet{devShapes, variantShapes} {
		if i > 0 {
			fmt.Fprintln(w)
		}
		playShapeSet(w, set)
	}
	return nil
}

// playShapeSet plays every shape of set with every fault (and without
// one) over its seeds and writes, per shape, which faults were found (an
// alert opening from the fault's first reading to five after its last)
// and the false alerts (openings past the warm-up and outside the fault
// and the half hour after it) per day of series.
func playShapeSet(w io.Writer, set shapeSet) {
	ns := len(set.seeds)
	fmt.Fprintf(w, "== %s: %d seeds of each shape and fault, one reading a minute for %d days, the fault on the fourth day; found = seeds with an alert from the fault's start to 5 readings after its end\n", set.title, ns, shapeReadings/1440)
	head := fmt.Sprintf("%-18s", "shape")
	for _, fl := range set.faults {
		head += fmt.Sprintf(" %*s", max(len(fl.name), 5), fl.name)
	}
	fmt.Fprintf(w, "%s  %s\n", head, "false alerts per day (without fault / with)")
	var found, total int
	var falseNone, falseWith, daysNone, daysWith float64
	for _, sh := range set.shapes {
		row := fmt.Sprintf("%-18s", sh.name)
		var fn, fw, dw float64
		for _, seed := range set.seeds {
			for _, o := range playShape(sh, nil, 0, seed, set.salt) {
				if o >= shapeWarm {
					fn++
				}
			}
		}
		for _, fl := range set.faults {
			if fl.kind == "rhythm" && !sh.periodic {
				row += fmt.Sprintf(" %*s", max(len(fl.name), 5), "-")
				continue
			}
			n := 0
			for _, seed := range set.seeds {
				start := 3*1440 + rand.New(rand.NewPCG(seed, set.at)).IntN(720)
				hit := false
				for _, o := range playShape(sh, &fl, start, seed, set.salt) {
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
				dw += shapeReadings / 1440.0
			}
			found += n
			total += ns
			row += fmt.Sprintf(" %*s", max(len(fl.name), 5), fmt.Sprintf("%d/%d", n, ns))
		}
		days := float64(ns) * shapeReadings / 1440
		daysNone += days
		daysWith += dw
		falseNone += fn
		falseWith += fw
		fmt.Fprintf(w, "%s  %.2f / %.2f\n", row, fn/days, fw/dw)
	}
	fmt.Fprintf(w, "all: %d of %d faults found; false alerts per day %.2f without a fault, %.2f with one\n", found, total, falseNone/daysNone, falseWith/daysWith)
}
