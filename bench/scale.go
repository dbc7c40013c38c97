package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sensorflow/sensorflow/internal/harness"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/processor/sink"
)

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// scale measures the detector's memory per series at each count of
// -scale.series (the processor's memory grows with series and nothing
// else), its cost per reading at that count, and the simulator with
// -simulator.devices devices.
func (b *bench) scale(ctx context.Context) error {
	_, _, _, detectCfg, _ := processorDefaults()
	for _, s := range strings.Split(b.cfg.scaleSeries, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-scale.series: %q is not a count", s)
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("dev-%07d", i)
		}
		before := heapInUse()
		det := detect.New(detectCfg)
		r := sensor.Reading{Site: "site-1", Metrics: map[string]float64{"temperature": 0}}
		var alerts []sensor.Alert
		var scores []float64
		t0 := time.Now().Add(-time.Hour)
		// Two readings per series: state exists, warm-up under way.
		for round := range 2 {
			for i, id := range ids {
				r.DeviceID = id
				r.TS = t0.Add(time.Duration(round) * time.Second)
				r.Metrics["temperature"] = 20 + float64(i%100)/100
				alerts, scores = det.Observe(&r, alerts[:0], scores[:0])
			}
		}
		perSeries := float64(heapInUse()-before) / float64(n)
		// Cost per reading in random series order, as partitions
		// interleave devices.
		order := rand.Perm(n)
		start := time.Now()
		steps := max(1_000_000, n)
		for k := range steps {
			i := order[k%n]
			r.DeviceID = ids[i]
			r.TS = t0.Add(time.Duration(2+k/n) * time.Second)
			r.Metrics["temperature"] = 20 + float64((i+k)%100)/100
			alerts, scores = det.Observe(&r, alerts[:0], scores[:0])
		}
		ns := float64(time.Since(start).Nanoseconds()) / float64(steps)
		if det.Series() != n {
			return fmt.Errorf("detector tracks %d series, want %d", det.Series(), n)
		}
		b.add(result{Section: "scale", Name: fmt.Sprintf("detector memory at %d series", n), Value: perSeries, Unit: "B/series", Target: 2048, Lower: true,
			Note: "growth of the live heap after GC, per series: the detector's map entry and state (the id strings are shared with the readings); target: the detector's budget of 2 KiB per series (processor/detect/README.md)"})
		b.add(result{Section: "scale", Name: fmt.Sprintf("detector cost at %d series", n), Value: ns, Unit: "ns/reading"})
		runtime.KeepAlive(det)
	}
	return b.simulatorScale(ctx)
}

// simulatorScale runs the simulator with many devices against the broker.
func (b *bench) simulatorScale(ctx context.Context) error {
	id := b.id + "-sim"
	n := b.cfg.simDevices
	p, err := harness.Start(ctx, b.cfg.bin, b.cfg.out+"/logs", "bench-simulator",
		"-target=simulator",
		"-mqtt.url="+b.srv.MQTTURL,
		"-mqtt.topic-prefix="+id,
		"-simulator.client-prefix="+id,
		fmt.Sprintf("-simulator.devices=%d", n),
		"-simulator.duration="+b.cfg.simDuration.String(),
	)
	if err != nil {
		return err
	}
	acked := map[string]string{"result": "acked"}
	t0 := time.Now()
	cpu0, _ := p.CPU()
	n0, _ := p.Metric("sensorflow_simulator_readings_total", acked)
	var n1 float64
	var cpu1 time.Duration
	var peak int64
	for {
		select {
		case <-p.Done():
			return fmt.Errorf("the simulator exited before -simulator.duration")
		case <-time.After(time.Second):
		}
		if v, err := p.Metric("sensorflow_simulator_readings_total", acked); err == nil {
			n1 = v
		}
		cpu1, _ = p.CPU()
		_, peak, _ = p.Memory()
		if time.Since(t0) >= b.cfg.simDuration-2*time.Second {
			break
		}
	}
	elapsed := time.Since(t0)
	if err := p.Stop(); err != nil {
		b.log.Warn("simulator exit", "err", err)
	}
	rate := (n1 - n0) / elapsed.Seconds()
	b.add(result{Section: "scale", Name: fmt.Sprintf("simulator, %d devices", n), Value: rate, Unit: "readings/s",
		Note: fmt.Sprintf("QoS 1 readings acknowledged by the broker (%d devices at one reading/s each ask for %d/s); %.1f µs CPU per reading; peak RSS %d MiB",
			n, n, float64((cpu1-cpu0).Microseconds())/max(n1-n0, 1), peak>>20)})
	b.add(result{Section: "scale", Name: fmt.Sprintf("simulator peak RSS, %d devices", n), Value: float64(peak) / (1 << 20), Unit: "MiB"})
	return nil
}

// detect runs the hot-path micro-benchmarks in process with testing.B:
// the same code `go test -bench` measures, reported in the table.
func (b *bench) detect(context.Context) error {
	_, _, _, detectCfg, _ := processorDefaults()
	bench := func(name string, f func(*testing.B)) testing.BenchmarkResult {
		r := testing.Benchmark(f)
		b.add(result{Section: "micro", Name: name, Value: float64(r.NsPerOp()), Unit: "ns/op",
			Note: fmt.Sprintf("%d allocs/op, %d B/op", r.AllocsPerOp(), r.AllocedBytesPerOp())})
		b.add(result{Section: "micro", Name: name + " allocs", Value: float64(r.AllocsPerOp()), Unit: "allocs/op"})
		return r
	}
	reading := func() sensor.Reading {
		return sensor.Reading{DeviceID: "dev-00042", Site: "plant-1", Metrics: map[string]float64{"temperature": 21, "humidity": 40}}
	}
	// observe times the detector on one device's readings; vary sets the
	// values of reading i.
	observe := func(r sensor.Reading, vary func(i int, m map[string]float64)) func(*testing.B) {
		return func(tb *testing.B) {
			det := detect.New(detectCfg)
			var alerts []sensor.Alert
			var scores []float64
			t0 := time.Now()
			tb.ReportAllocs()
			for i := 0; tb.Loop(); i++ {
				r.TS = t0.Add(time.Duration(i) * time.Second)
				vary(i, r.Metrics)
				alerts, scores = det.Observe(&r, alerts[:0], scores[:0])
			}
		}
	}
	bench("detect: one reading, two metrics", observe(reading(), func(i int, m map[string]float64) {
		m["temperature"] = 21 + float64(i%17)/10
		m["humidity"] = 40 + float64(i%13)/10
	}))
	// A pump's eight sensors (SKAB's device): the device score's cost
	// grows with the metrics, so the per-metric figure is the one to hold
	// against the detector's budget.
	pumpMetrics := []string{"accelerometer1rms", "accelerometer2rms", "current", "pressure", "temperature", "thermocouple", "voltage", "volume_flow_rate_rms"}
	pump := make(map[string]float64, len(pumpMetrics))
	for _, m := range pumpMetrics {
		pump[m] = 0
	}
	eight := bench("detect: one reading, eight metrics", observe(sensor.Reading{DeviceID: "pump-1", Site: "plant-1", Metrics: pump}, func(i int, m map[string]float64) {
		for k, name := range pumpMetrics {
			m[name] = float64(k+1) + float64((i+3*k)%17)/10
		}
	}))
	if eight.N > 0 {
		b.add(result{Section: "micro", Name: "detect: per metric of an eight-metric reading", Value: float64(eight.NsPerOp()) / 8, Unit: "ns/op", Target: 2000, Lower: true,
			Note: "the detector's budget: 2 µs per reading per metric, device score included"})
	}
	payload := []byte(`{"ts":"2026-11-22T10:00:00.123Z","seq":17,"metrics":{"temperature":21.5,"humidity":40.2}}`)
	dec := sensor.Decoder{MaxAge: 30 * 24 * time.Hour, MaxFuture: time.Hour}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	bench("bridge: decode and validate a payload", func(tb *testing.B) {
		tb.ReportAllocs()
		for tb.Loop() {
			if _, err := dec.Decode("plant-1", "dev-00042", payload, now); err != nil {
				tb.Fatal(err)
			}
		}
	})
	r := reading()
	r.TS = now
	normalized := r.AppendJSON(nil)
	bench("processor: parse a normalized reading", func(tb *testing.B) {
		tb.ReportAllocs()
		for tb.Loop() {
			if _, err := sensor.ParseReading(normalized); err != nil {
				tb.Fatal(err)
			}
		}
	})
	batch := sink.Batch{Readings: []sensor.Reading{r}, Scores: []float64{0.1, 0.2}}
	var buf []byte
	bench("influx: line protocol of one reading", func(tb *testing.B) {
		tb.ReportAllocs()
		for tb.Loop() {
			buf = sink.AppendLineProtocol(buf[:0], batch)
		}
	})
	return nil
}
