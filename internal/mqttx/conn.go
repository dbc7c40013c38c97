package mqttx

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// flushDelay is how long written packets may wait to be sent together.
const flushDelay = 200 * time.Microsecond

// bufferedConn buffers both directions of a broker connection. paho reads
// each packet's fixed header a byte at a time and writes every packet with
// its own system call; a bridge acknowledging a batch of a thousand
// messages would make a thousand writes of four bytes. Reads go through a
// bufio.Reader; writes are gathered for at most flushDelay and sent in one
// system call. A failed flush closes the connection, so paho sees the
// failure on its next read and reconnects, exactly as when the kernel's
// send buffer is lost with a broken connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	wmu sync.Mutex // held while writing to Conn: keeps flushes in order

	mu      sync.Mutex // guards the fields below
	pending []byte
	spare   []byte
	armed   bool
	err     error
}

func newBufferedConn(c net.Conn) *bufferedConn {
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	c.pending = append(c.pending, p...)
	full := len(c.pending) >= 64<<10
	if !full && !c.armed {
		c.armed = true
		time.AfterFunc(flushDelay, func() { _ = c.flush() })
	}
	c.mu.Unlock()
	if full {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// open reports whether writes may still succeed.
func (c *bufferedConn) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

// flush sends what is pending.
func (c *bufferedConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	buf := c.pending
	c.pending, c.spare = c.spare[:0], nil
	c.armed = false
	err := c.err
	c.mu.Unlock()
	if err == nil && len(buf) > 0 {
		if _, err = c.Conn.Write(buf); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			_ = c.Conn.Close()
		}
	}
	c.mu.Lock()
	if c.spare == nil && cap(buf) <= 256<<10 {
		c.spare = buf[:0]
	}
	c.mu.Unlock()
	return err
}

// Close sends what is pending (a DISCONNECT, typically) first. Writes
// after it fail.
func (c *bufferedConn) Close() error {
	_ = c.flush()
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// openBuffered dials tcp and tls brokers like paho does (without proxy
// support) and buffers the connection. Other schemes are left to paho.
func openBuffered(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	if o.Dialer != nil {
		d = o.Dialer
	}
	var conn net.Conn
	var err error
	// TLS for an ssl:// URL, and for any URL when TLS settings were given
	// (-mqtt.tls, a CA or a client certificate).
	switch {
	case uri.Scheme == "ssl" || uri.Scheme == "tls" || uri.Scheme == "mqtts" || o.TLSConfig != nil:
		tc := o.TLSConfig
		if tc == nil {
			tc = &tls.Config{}
		}
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, tc)
	default:
		conn, err = d.Dial("tcp", uri.Host)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}
