package mqttx

import (
	"net"
	"net/url"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Acks writes the QoS 1 acknowledgements (PUBACK) of a run of messages
// straight to the client's current broker connection, in one write, in
// order. paho passes each acknowledgement through three goroutines on its
// way out, which at tens of thousands of messages a second costs the
// bridge more CPU than the acknowledgements themselves. For a connection
// paho opened itself (websockets), before the first CONNACK, or once the
// current connection is closed (lost, until the next CONNACK), Ack falls
// back to paho's own, one message at a time: an acknowledgement that does
// not arrive only makes the broker deliver the message again.
type Acks struct {
	mu        sync.Mutex
	next, cur *bufferedConn
}

// Attach makes a's connections those o opens; call it on the options
// before the client connects, and Connected from the client's connect
// handler. (No handler is needed for a lost connection: paho closes it, and
// a write to a closed connection fails. paho runs its connection-lost
// handler in a goroutine of its own, which may come after the next
// connect handler.)
func (a *Acks) Attach(o *mqtt.ClientOptions) {
	open := o.CustomOpenConnectionFn
	if open == nil {
		return // paho opens the connection: Ack uses paho's
	}
	o.SetCustomOpenConnectionFn(func(u *url.URL, co mqtt.ClientOptions) (net.Conn, error) {
		conn, err := open(u, co)
		if bc, ok := conn.(*bufferedConn); ok && err == nil {
			a.mu.Lock()
			a.next = bc
			a.mu.Unlock()
		}
		return conn, err
	})
}

// Connected marks the connection opened last as the client's: the broker
// accepted it (its CONNACK arrived), so acknowledgements may go on it.
func (a *Acks) Connected() {
	a.mu.Lock()
	a.cur = a.next
	a.mu.Unlock()
}

// Direct reports whether acknowledgements go straight to the connection
// now (false: through paho).
func (a *Acks) Direct() bool {
	a.mu.Lock()
	c := a.cur
	a.mu.Unlock()
	return c != nil && c.open()
}

// Ack acknowledges msgs, QoS 1 messages received by the client, in order.
func (a *Acks) Ack(msgs []mqtt.Message) {
	a.mu.Lock()
	c := a.cur
	a.mu.Unlock()
	if c != nil {
		buf := make([]byte, 0, 4*len(msgs))
		for _, m := range msgs {
			if m.Qos() != 1 {
				buf = nil // not a PUBACK: paho's own acknowledgement
				break
			}
			id := m.MessageID()
			buf = append(buf, 0x40, 0x02, byte(id>>8), byte(id)) // PUBACK, remaining length 2, packet id
		}
		if buf != nil {
			if _, err := c.Write(buf); err == nil {
				return
			}
		}
	}
	for _, m := range msgs {
		m.Ack()
	}
}
