// Package quality scores alerts against the simulator's ground truth, event
// by event, and runs the detector over simulated fleets offline. The live
// evaluation (e2e TestDetectionQuality) and `make eval` share it.
package quality

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/processor/detect"
	"github.com/sensorflow/sensorflow/simulator"
)

// Quality is the event-level score of a run.
type Quality struct {
	Anomalies, Found, Alerts, FalseAlerts int
	Precision, Recall                     float64
	MedianDelayReadings                   float64
	RecallByKind                          map[string]string
	found, total                          map[string]int
}

func (q Quality) String() string {
	kinds := make([]string, 0, len(q.RecallByKind))
	for k, v := range q.RecallByKind {
		kinds = append(kinds, k+" "+v)
	}
	sort.Strings(kinds)
	return fmt.Sprintf("precision %.3f (%d of %d alerts match an anomaly), recall %.3f (%d of %d anomalies found), median delay %.1f readings; by kind: %s",
		q.Precision, q.Alerts-q.FalseAlerts, q.Alerts, q.Recall, q.Found, q.Anomalies, q.MedianDelayReadings, strings.Join(kinds, ", "))
}

// Score matches opened alerts to the ground truth: an anomaly is found
// when an alert for its device and metric (any metric for a dropout) opens
// inside its window, or within five intervals after it for what shows when
// the anomaly ends (a dropout's gap); an alert that matches no anomaly is a
// false one. An anomaly the run's end cut short (a sensor stuck for its
// last ten readings cannot be told from a steady one yet) is not counted
// as found or missed. Delays are in readings of the given interval.
func Score(truth []simulator.GroundTruth, opened []sensor.Alert, interval time.Duration) Quality {
	tol := 5 * interval
	matches := func(g simulator.GroundTruth, a sensor.Alert) bool {
		return a.DeviceID == g.DeviceID && (g.Metric == "*" || a.Metric == g.Metric) &&
			!a.StartedAt.Before(g.Start) && !a.StartedAt.After(g.End.Add(tol))
	}
	q := Quality{Alerts: len(opened), found: map[string]int{}, total: map[string]int{}}
	var delays []float64
	for _, g := range truth {
		if g.Cut {
			continue // not counted: an alert for it is not false either
		}
		q.Anomalies++
		q.total[g.Kind]++
		first := time.Time{}
		for _, a := range opened {
			if matches(g, a) && (first.IsZero() || a.StartedAt.Before(first)) {
				first = a.StartedAt
			}
		}
		if !first.IsZero() {
			q.Found++
			q.found[g.Kind]++
			delays = append(delays, float64(first.Sub(g.Start))/float64(interval))
		}
	}
	for _, a := range opened {
		if !slices.ContainsFunc(truth, func(g simulator.GroundTruth) bool { return matches(g, a) }) {
			q.FalseAlerts++
		}
	}
	if len(delays) > 0 {
		slices.Sort(delays)
		q.MedianDelayReadings = delays[len(delays)/2]
	}
	return q.finish()
}

func (q Quality) finish() Quality {
	q.RecallByKind = map[string]string{}
	for k, n := range q.total {
		q.RecallByKind[k] = fmt.Sprintf("%d/%d", q.found[k], n)
	}
	q.Precision, q.Recall = 0, 0
	if q.Alerts > 0 {
		q.Precision = float64(q.Alerts-q.FalseAlerts) / float64(q.Alerts)
	}
	if q.Anomalies > 0 {
		q.Recall = float64(q.Found) / float64(q.Anomalies)
	}
	return q
}

// Add pools two runs; the pooled median delay is the mean of the two
// medians weighted by anomalies found (an approximation).
func (q Quality) Add(o Quality) Quality {
	if q.found == nil {
		q.found, q.total = map[string]int{}, map[string]int{}
	}
	if q.Found+o.Found > 0 {
		q.MedianDelayReadings = (q.MedianDelayReadings*float64(q.Found) + o.MedianDelayReadings*float64(o.Found)) / float64(q.Found+o.Found)
	}
	q.Anomalies += o.Anomalies
	q.Found += o.Found
	q.Alerts += o.Alerts
	q.FalseAlerts += o.FalseAlerts
	for k, n := range o.total {
		q.total[k] += n
		q.found[k] += o.found[k]
	}
	return q.finish()
}

// Offline plays the simulator's fleet without a broker (simulator.Play)
// through one detector, as the processor would see it, and returns the
// alerts it opens and the ground truth.
func Offline(sim simulator.Config, start time.Time, det detect.Config) ([]sensor.Alert, []simulator.GroundTruth, error) {
	d := detect.New(det)
	var opened, events []sensor.Alert
	truth, err := simulator.Play(sim, start, func(r *sensor.Reading) {
		events, _ = d.Observe(r, events[:0], nil)
		for _, a := range events {
			if a.State == sensor.StateOpen {
				opened = append(opened, a)
			}
		}
	})
	return opened, truth, err
}
