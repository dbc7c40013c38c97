package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sensorflow/sensorflow/internal/harness"

	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
)

func (b *bench) mqttConfig() mqttx.Config {
	return mqttx.Config{URL: b.srv.MQTTURL, KeepAlive: 30 * time.Second, ConnectWait: 10 * time.Second}
}

// kafkaConfig names a set of topics of its own.
func (b *bench) kafkaConfig(id string) kafkax.Config {
	return kafkax.Config{
		Brokers:           b.srv.KafkaBrokers,
		ReadingsTopic:     id + ".readings",
		AlertsTopic:       id + ".alerts",
		DeadLetterTopic:   id + ".deadletter",
		Partitions:        6,
		ReplicationFactor: 1,
		CreateTopics:      true,
		SessionTimeout:    10 * time.Second,
	}
}

func (b *bench) dropTopics(k kafkax.Config) {
	cl, err := k.Client()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{k.ReadingsTopic, k.AlertsTopic, k.RawAlerts(), k.DeadLetterTopic, k.State()}})
}

// bridgeArgs are the flags of a bridge process for topics k under prefix.
func (b *bench) bridgeArgs(id, prefix string, k kafkax.Config, forwardAlerts bool) []string {
	return []string{
		"-target=bridge",
		"-mqtt.url=" + b.srv.MQTTURL,
		"-mqtt.topic-prefix=" + prefix,
		"-kafka.brokers=" + k.Brokers,
		"-kafka.readings-topic=" + k.ReadingsTopic,
		"-kafka.alerts-topic=" + k.AlertsTopic,
		"-kafka.deadletter-topic=" + k.DeadLetterTopic,
		"-bridge.client-id=" + id + "-bridge",
		"-bridge.share-group=" + id,
		"-bridge.alerts-group=" + id + "-alerts",
		fmt.Sprintf("-bridge.forward-alerts=%t", forwardAlerts),
	}
}

// bridge measures MQTT QoS 1 → Kafka (acks=all) forwarding against a plain
// QoS 1 subscriber on the same broker, with the same publishers and load.
// Ceiling and bridge rounds alternate, each under its own topic prefix so
// neither receives the other's messages.
func (b *bench) bridge(ctx context.Context) error {
	id := b.id + "-br"
	n := b.cfg.bridgeMessages
	k := b.kafkaConfig(id)
	defer b.dropTopics(k)
	ceilingLoad := makeLoad(id+"-c", n, 1000)
	bridgeLoad := makeLoad(id+"-b", n, 1000)

	br, err := harness.Start(ctx, b.cfg.bin, b.cfg.out+"/logs", "bench-bridge", b.bridgeArgs(id, id+"-b", k, false)...)
	if err != nil {
		return err
	}
	defer br.Stop()
	pubs, err := connectPublishers(b.mqttConfig(), id, b.cfg.bridgePublishers)
	if err != nil {
		return err
	}
	defer pubs.close()
	const window = 1000

	var ceil, rate, cpuPer []float64
	var shares [][2]brokerShare
	forwarded := map[string]string{"result": "forwarded"}
	for round := range b.cfg.rounds {
		// Ceiling: a plain subscriber that only counts.
		c, err := subscribeCounter(b.mqttConfig(), fmt.Sprintf("%s-%d", id, round), id+"-c/+/+/telemetry")
		if err != nil {
			return err
		}
		c.target.Store(int64(n))
		srv0, self0 := serverCPU(), selfCPU()
		b0, tot0 := harness.MachineCPU()
		t0 := time.Now()
		if err := pubs.publish(ctx, ceilingLoad, window); err != nil {
			c.client.Disconnect(0)
			return fmt.Errorf("publishing: %w", err)
		}
		var t1 time.Time
		select {
		case t1 = <-c.reach:
		case <-time.After(60 * time.Second):
			c.client.Disconnect(0)
			return fmt.Errorf("the plain subscriber received %d of %d", c.n.Load(), n)
		}
		ceilBusy := harness.BusySince(b0, tot0)
		srv1, self1 := serverCPU(), selfCPU()
		c.client.Disconnect(100)
		ceil = append(ceil, float64(n)/t1.Sub(t0).Seconds())

		// The bridge.
		base, err := br.Metric("sensorflow_bridge_messages_total", forwarded)
		if err != nil {
			return err
		}
		cpu0, _ := br.CPU()
		srv2, self2 := serverCPU(), selfCPU()
		b0, tot0 = harness.MachineCPU()
		t0 = time.Now()
		var prof <-chan error
		if round == 0 {
			prof = br.Profile(5*time.Second, b.cfg.out+"/profiles/bridge.cpu.pprof")
		}
		errc := make(chan error, 1)
		go func() { errc <- pubs.publish(ctx, bridgeLoad, window) }()
		t1, err = br.WaitMetric(ctx, "sensorflow_bridge_messages_total", forwarded, base+float64(n), 120*time.Second)
		if err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		cpu1, _ := br.CPU()
		bridgeBusy := harness.BusySince(b0, tot0)
		srv3, self3 := serverCPU(), selfCPU()
		if prof != nil {
			if err := <-prof; err != nil {
				b.log.Warn("bridge profile", "err", err)
			}
		}
		rate = append(rate, float64(n)/t1.Sub(t0).Seconds())
		cpuPer = append(cpuPer, float64((cpu1-cpu0).Microseconds())/float64(n))
		us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
		shares = append(shares, [2]brokerShare{
			{broker: us(srv1["mosquitto"] - srv0["mosquitto"]), clients: us(self1 - self0), busy: ceilBusy},
			{broker: us(srv3["mosquitto"] - srv2["mosquitto"]), clients: us(self3 - self2), bridge: cpuPer[round], kafka: us(srv3["kafka"] - srv2["kafka"]), busy: bridgeBusy},
		})
		b.log.Info("bridge round", "round", round, "ceiling_msg_s", int(ceil[round]), "bridge_msg_s", int(rate[round]), "cpu_us_per_msg", cpuPer[round],
			"machine_busy_ceiling", fmt.Sprintf("%.0f%%", 100*ceilBusy), "machine_busy_bridge", fmt.Sprintf("%.0f%%", 100*bridgeBusy))
	}
	if b.cfg.peers {
		if err := b.telegrafBridge(ctx, pubs, k, n, best(ceil), best(rate), lowest(cpuPer)); err != nil {
			b.add(result{Section: "bridge", Name: "error", Note: "peer Telegraf: " + err.Error()})
		}
	}
	_, peak, _ := br.Memory()
	b.add(result{Section: "bridge", Name: "MQTT QoS 1 → Kafka acks=all", Value: best(rate), Unit: "msg/s", Ceiling: best(ceil), Target: 0.8,
		Note: fmt.Sprintf("%d messages per round from %d publishers, best of %d rounds; ceiling: a plain QoS 1 subscriber on the same broker", n, b.cfg.bridgePublishers, b.cfg.rounds)})
	b.add(result{Section: "bridge", Name: "CPU per message", Value: lowest(cpuPer), Unit: "µs", Target: 5, Lower: true,
		Note: "user+system CPU of the bridge process per message forwarded"})
	b.add(result{Section: "bridge", Name: "peak RSS", Value: float64(peak) / (1 << 20), Unit: "MiB"})
	// The round the bridge did best in explains its ratio.
	bi := bestRound(rate)
	pl, fw := shares[bi][0], shares[bi][1]
	b.add(result{Section: "bridge", Name: "machine CPU per message, plain subscriber", Value: pl.total(), Unit: "µs",
		Note: fmt.Sprintf("Mosquitto %.1f + publishers and subscriber %.1f µs per message; machine %.0f%% busy", pl.broker, pl.clients, 100*pl.busy)})
	// The bench process runs the publishers in both runs and the plain
	// subscriber in the ceiling run only: the difference is what a paho
	// QoS 1 subscriber that does nothing with its messages costs, the
	// floor under the bridge's own CPU (it receives with the same library).
	b.add(result{Section: "bridge", Name: "CPU per message, plain subscriber (by difference)", Value: max(0, pl.clients-fw.clients), Unit: "µs",
		Note: fmt.Sprintf("the bench process's CPU per message in the ceiling run (publishers and the plain paho subscriber, %.1f µs) less in the bridge run (the publishers alone, %.1f µs): receiving and acknowledging a QoS 1 message with paho, before the bridge decodes, converts or writes anything; the bridge's own %.1f µs is %.1f µs above it",
			pl.clients, fw.clients, fw.bridge, fw.bridge-max(0, pl.clients-fw.clients))})
	b.add(result{Section: "bridge", Name: "machine CPU per message, bridge", Value: fw.total(), Unit: "µs",
		Note: fmt.Sprintf("Mosquitto %.1f + publishers %.1f + the bridge %.1f + Kafka %.1f µs per message; machine %.0f%% busy. With the machine saturated in both runs, the bridge's rate can reach at most the plain subscriber's CPU per message ÷ this one = %.3f of the ceiling",
			fw.broker, fw.clients, fw.bridge, fw.kafka, 100*fw.busy, pl.total()/fw.total())})
	return nil
}

// bestRound is the index of the highest of vs (0 when empty).
func bestRound(vs []float64) int {
	bi := 0
	for i := range vs {
		if vs[i] > vs[bi] {
			bi = i
		}
	}
	return bi
}

func lowest(vs []float64) float64 {
	m := 0.0
	for i, v := range vs {
		if i == 0 || v < m {
			m = v
		}
	}
	return m
}

// brokerShare is the CPU each process on a bridge run's path spent per
// message, in µs, and how busy the machine was. clients are this process:
// the publishers, and in the ceiling run the plain subscriber.
type brokerShare struct {
	broker, clients, bridge, kafka, busy float64
}

func (c brokerShare) total() float64 { return c.broker + c.clients + c.bridge + c.kafka }
