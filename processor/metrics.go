package processor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

type metrics struct {
	readings   *prometheus.CounterVec // result: stored, rejected
	rejected   *prometheus.CounterVec // reason
	alerts     *prometheus.CounterVec // result: open, resolved
	batches    *prometheus.CounterVec // result: committed, commit_error
	lag        *prometheus.GaugeVec
	series     prometheus.Gauge
	openAlerts prometheus.Gauge
	// incidents stage
	grouped       *prometheus.CounterVec // result: published, grouped
	incidents     *prometheus.CounterVec // kind, result: open, resolved
	incidentsOpen prometheus.Gauge
	alertsHeld    prometheus.Gauge
	stateResets   prometheus.Counter
	// detector checkpoints
	checkpoints      *prometheus.CounterVec // result: written, error
	checkpointSeries prometheus.Counter
	checkpointBytes  prometheus.Counter
	restores         *prometheus.CounterVec // result: restored, failed
	restoredSeries   *prometheus.CounterVec // result: restored, discarded (devices)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_readings_total", Help: "Readings consumed, by result (stored in every sink, or rejected to the dead-letter topic).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_rejected_total", Help: "Messages of the readings topic sent to the dead-letter topic, by reason (only producers other than the bridge write such messages).",
		}, []string{"reason"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_alerts_total", Help: "Alert events published, by result (open or resolved).",
		}, []string{"result"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_batches_total", Help: "Batches processed, by result of the offset commit.",
		}, []string{"result"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sensorflow_processor_consumer_lag_messages", Help: "Messages behind the partition's high-water mark at the last fetched message.",
		}, []string{"partition"}),
		series: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_processor_series", Help: "(device, metric) series tracked by the detector.",
		}),
		openAlerts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_processor_open_alerts", Help: "Alerts currently open.",
		}),
		grouped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_incident_stage_alerts_total", Help: "Device alert events through the incidents stage, by result: published on the alerts topic, or grouped into a site incident (stored, linked to it, not published).",
		}, []string{"result"}),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_incidents_total", Help: "Site incident events published, by kind (outage, site_wide) and result (open, resolved).",
		}, []string{"kind", "result"}),
		incidentsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_processor_incidents_open", Help: "Site incidents open in this processor's incidents stage.",
		}),
		alertsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sensorflow_processor_alerts_held", Help: "Device gap alerts held by the incidents stage while it waits to learn whether they are part of an outage (-incidents.hold).",
		}),
		stateResets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sensorflow_processor_partition_state_resets_total", Help: "Times a partition came back after another processor consumed it and this processor dropped the detector state it held for its devices (stale): they are restored from the state topic, or start over without checkpoints.",
		}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_checkpoints_total", Help: "Detector checkpoints, by result: written to the state topic (offsets are committed up to them), or failed to write.",
		}, []string{"result"}),
		checkpointSeries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sensorflow_processor_checkpoint_series_total", Help: "Series whose state was written in a checkpoint.",
		}),
		checkpointBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sensorflow_processor_checkpoint_bytes_total", Help: "Bytes of detector state written in checkpoints (values only).",
		}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_state_restores_total", Help: "Partitions whose detector states were read from the state topic when they came to this processor, by result (restored, or failed: the devices start over).",
		}, []string{"result"}),
		restoredSeries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sensorflow_processor_state_restored_total", Help: "Restored detector state: series restored, and device states discarded (another detector version, or damaged).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.readings, m.rejected, m.alerts, m.batches, m.lag, m.series, m.openAlerts, m.grouped, m.incidents, m.incidentsOpen, m.alertsHeld, m.stateResets,
		m.checkpoints, m.checkpointSeries, m.checkpointBytes, m.restores, m.restoredSeries)
	for _, r := range []string{"written", "error"} {
		m.checkpoints.WithLabelValues(r)
	}
	for _, r := range []string{"restored", "failed"} {
		m.restores.WithLabelValues(r)
	}
	for _, r := range []string{"restored", "discarded"} {
		m.restoredSeries.WithLabelValues(r)
	}
	for _, r := range []string{"published", "grouped"} {
		m.grouped.WithLabelValues(r)
	}
	for _, r := range []string{"stored", "rejected"} {
		m.readings.WithLabelValues(r)
	}
	for _, r := range sensor.Reasons {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"open", "resolved"} {
		m.alerts.WithLabelValues(r)
	}
	for _, r := range []string{"committed", "commit_error"} {
		m.batches.WithLabelValues(r)
	}
	return m
}
