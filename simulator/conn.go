package simulator

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/sensorflow/sensorflow/internal/mqttx"
)

// conn is one MQTT connection and the goroutine that collects its
// acknowledgements in publish order.
type conn struct {
	s       *Simulator
	client  mqtt.Client
	device  *device // the device it belongs to, when one per device
	pending chan pending
	done    chan struct{}
	wg      sync.WaitGroup
}

type pending struct {
	token  mqtt.Token
	device string
	seq    int64
	ts     time.Time
}

// connect opens the connections, concurrently, and waits for all of them.
// With one connection per device each announces the device's status: a
// retained "online" on connect and "offline" as last will.
func (s *Simulator) connect(ctx context.Context, fleet []*device) ([]*conn, error) {
	n := s.cfg.Connections
	if n == 0 {
		n = s.autoConnections()
	}
	perDevice := n == len(fleet)
	// A refused password or an untrusted certificate ends the run here, with
	// the broker's answer, before the fleet's clients retry in silence.
	if err := s.cfg.MQTT.Preflight(ctx, s.log, s.cfg.ClientPrefix+"-preflight"); err != nil {
		return nil, err
	}
	conns := make([]*conn, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range conns {
		c := &conn{s: s, pending: make(chan pending, s.cfg.MaxInflight), done: make(chan struct{})}
		id := s.cfg.ClientPrefix + "-pool-" + strconv.Itoa(i)
		if perDevice {
			c.device = fleet[i]
			id = s.cfg.ClientPrefix + "-" + fleet[i].id
		}
		opts, err := s.cfg.MQTT.Options(id, true)
		if err != nil {
			return nil, err
		}
		opts.SetConnectRetry(true).SetAutoReconnect(true)
		if c.device != nil {
			status := s.topics.Status(c.device.site, c.device.id)
			opts.SetWill(status, "offline", 1, true)
			opts.SetOnConnectHandler(func(cl mqtt.Client) { cl.Publish(status, 1, true, "online") })
		}
		c.client = mqtt.NewClient(opts)
		conns[i] = c
		g.Go(func() error {
			t := c.client.Connect()
			select {
			case <-t.Done():
				return t.Error()
			case <-time.After(s.cfg.ConnectTimeout):
				return fmt.Errorf("mqtt connection %s not established within %s", id, s.cfg.ConnectTimeout)
			case <-gctx.Done():
				return nil
			}
		})
	}
	if err := g.Wait(); err != nil {
		for _, c := range conns {
			c.client.Disconnect(0)
		}
		return nil, fmt.Errorf("connecting simulator to %s: %w", s.cfg.MQTT.URL, err)
	}
	if ctx.Err() != nil {
		for _, c := range conns {
			c.client.Disconnect(0)
		}
		return nil, nil
	}
	for _, c := range conns {
		c.wg.Add(1)
		go c.collect()
	}
	s.log.Info("simulator connected", "devices", len(fleet), "connections", n, "broker", s.cfg.MQTT.URL)
	return conns, nil
}

// publish sends a QoS 1 message; it blocks while MaxInflight publishes of
// this connection await their acknowledgement.
func (c *conn) publish(ctx context.Context, topic string, payload []byte, device string, seq int64, ts time.Time) error {
	t := c.client.Publish(topic, 1, false, payload)
	select {
	case c.pending <- pending{token: t, device: device, seq: seq, ts: ts}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// collect waits for acknowledgements in publish order.
func (c *conn) collect() {
	defer c.wg.Done()
	for p := range c.pending {
		p.token.Wait()
		if err := p.token.Error(); err != nil {
			c.s.errs.Add(1)
			c.s.m.readings.WithLabelValues("error").Inc()
			continue
		}
		c.s.acked.Add(1)
		c.s.m.readings.WithLabelValues("acked").Inc()
		if c.s.ackLog != nil {
			c.s.mu.Lock()
			c.s.ackLog.WriteString(p.device)
			c.s.ackLog.WriteByte(' ')
			c.s.ackLog.WriteString(strconv.FormatInt(p.seq, 10))
			c.s.ackLog.WriteByte(' ')
			c.s.ackLog.WriteString(p.ts.Format(time.RFC3339Nano))
			c.s.ackLog.WriteByte('\n')
			c.s.mu.Unlock()
		}
	}
}

// waitAcks closes the pending queues and waits up to d for the collectors.
func (s *Simulator) waitAcks(conns []*conn, d time.Duration) {
	for _, c := range conns {
		close(c.pending)
	}
	deadline := time.After(d)
	for _, c := range conns {
		ch := make(chan struct{})
		go func() { c.wg.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-deadline:
			s.log.Warn("acknowledgements still outstanding at shutdown")
			return
		}
	}
}

// disconnect says goodbye: devices publish a retained "offline" first.
func (s *Simulator) disconnect(conns []*conn, _ []*device) {
	for _, c := range conns {
		if c.device != nil && c.client.IsConnected() {
			_ = mqttx.Wait(c.client.Publish(s.topics.Status(c.device.site, c.device.id), 1, true, "offline"), 2*time.Second)
		}
		c.client.Disconnect(250)
	}
}
