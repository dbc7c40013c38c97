package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorflow/sensorflow/internal/mqttx"
)

// load is a pre-encoded set of telemetry messages.
type load struct {
	topics   []string
	payloads [][]byte
}

// makeLoad encodes n readings of devices devices (two metrics each) under
// prefix, stamped around now.
func makeLoad(prefix string, n, devices int) load {
	l := load{topics: make([]string, n), payloads: make([][]byte, n)}
	now := time.Now().UTC()
	for i := range n {
		d := i % devices
		l.topics[i] = fmt.Sprintf("%s/site-%d/dev-%05d/telemetry", prefix, d%10, d)
		ts := now.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano)
		l.payloads[i] = fmt.Appendf(nil, `{"ts":%q,"seq":%d,"metrics":{"temperature":%s,"humidity":%s}}`,
			ts, i/devices, strconv.FormatFloat(20+float64(i%97)/10, 'f', 2, 64), strconv.FormatFloat(40+float64(i%89)/10, 'f', 2, 64))
	}
	return l
}

// publishers are connected QoS 1 publishing clients.
type publishers struct {
	clients []mqtt.Client
}

func connectPublishers(cfg mqttx.Config, id string, n int) (*publishers, error) {
	p := &publishers{}
	for i := range n {
		o, err := cfg.Options(fmt.Sprintf("%s-pub-%d", id, i), true)
		if err != nil {
			return nil, err
		}
		o.SetConnectRetry(false)
		c := mqtt.NewClient(o)
		if err := mqttx.Wait(c.Connect(), 10*time.Second); err != nil {
			p.close()
			return nil, fmt.Errorf("publisher %d: %w", i, err)
		}
		p.clients = append(p.clients, c)
	}
	return p, nil
}

func (p *publishers) close() {
	for _, c := range p.clients {
		c.Disconnect(100)
	}
}

// publish sends the load as fast as the broker acknowledges it, split over
// the clients, each keeping up to window messages in flight. It returns
// when every PUBACK arrived.
func (p *publishers) publish(ctx context.Context, l load, window int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(p.clients))
	for ci, c := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ring := make([]mqtt.Token, 0, window)
			head := 0
			for i := ci; i < len(l.topics); i += len(p.clients) {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				t := c.Publish(l.topics[i], 1, false, l.payloads[i])
				if len(ring) < window {
					ring = append(ring, t)
					continue
				}
				if err := mqttx.Wait(ring[head], 30*time.Second); err != nil {
					errs <- err
					return
				}
				ring[head] = t
				head = (head + 1) % window
			}
			for _, t := range ring {
				if err := mqttx.Wait(t, 30*time.Second); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// paced publishes at rate messages/s for d, calling next for each message's
// topic and payload with the time it is sent. It returns how many were sent
// and acknowledged.
func (p *publishers) paced(ctx context.Context, rate int, d time.Duration, next func(i int, now time.Time) (string, []byte)) (sent, acked int64, err error) {
	var s, a atomic.Int64
	var mu sync.Mutex
	var firstErr error
	tick := 5 * time.Millisecond
	perTick := float64(rate) * tick.Seconds()
	start := time.Now()
	var wg sync.WaitGroup
	tokens := make(chan mqtt.Token, 1<<16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for t := range tokens {
			if err := mqttx.Wait(t, 60*time.Second); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				continue
			}
			a.Add(1)
		}
	}()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	i := 0
	for time.Since(start) < d && ctx.Err() == nil {
		<-tk.C
		due := int(perTick * float64(time.Since(start)) / float64(tick))
		now := time.Now()
		for ; i < due; i++ {
			topic, payload := next(i, now)
			c := p.clients[i%len(p.clients)]
			tokens <- c.Publish(topic, 1, false, payload)
			s.Add(1)
		}
	}
	close(tokens)
	wg.Wait()
	return s.Load(), a.Load(), firstErr
}

// counter is a plain QoS 1 subscriber that counts what it receives.
type counter struct {
	client mqtt.Client
	n      atomic.Int64
	target atomic.Int64
	reach  chan time.Time
}

func subscribeCounter(cfg mqttx.Config, id, filter string) (*counter, error) {
	c := &counter{reach: make(chan time.Time, 1)}
	o, err := cfg.Options(id+"-ceiling", true)
	if err != nil {
		return nil, err
	}
	o.SetConnectRetry(false)
	handler := func(_ mqtt.Client, _ mqtt.Message) {
		if n := c.n.Add(1); n == c.target.Load() {
			c.reach <- time.Now()
		}
	}
	o.SetDefaultPublishHandler(handler)
	c.client = mqtt.NewClient(o)
	if err := mqttx.Wait(c.client.Connect(), 10*time.Second); err != nil {
		return nil, err
	}
	if err := mqttx.Wait(c.client.Subscribe(filter, 1, handler), 10*time.Second); err != nil {
		c.client.Disconnect(0)
		return nil, err
	}
	return c, nil
}
