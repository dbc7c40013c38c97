package mqttx

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pair returns a buffered client end and the raw server end of a loopback
// TCP connection.
func pair(t *testing.T) (*bufferedConn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	srv := <-accepted
	t.Cleanup(func() { c.Close(); srv.Close() })
	return newBufferedConn(c), srv
}

func TestBufferedConnKeepsOrderAcrossWriters(t *testing.T) {
	c, srv := pair(t)
	var want bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Concurrent writers, as paho's outgoing goroutine and Disconnect
	// may be: each packet must arrive whole and in the order written.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				p := fmt.Appendf(nil, "[%d:%d]", w, i)
				mu.Lock()
				want.Write(p)
				_, err := c.Write(p)
				mu.Unlock()
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, c.Close())
	got, err := io.ReadAll(srv)
	require.NoError(t, err)
	require.Equal(t, want.String(), string(got))
}

func TestBufferedConnFlushesSoon(t *testing.T) {
	c, srv := pair(t)
	_, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	require.NoError(t, srv.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err, "a lone packet is sent without further writes")
	require.Equal(t, "ping", string(buf))
}

func TestBufferedConnReadsThroughBuffer(t *testing.T) {
	c, srv := pair(t)
	go func() { _, _ = srv.Write([]byte("abcdef")) }()
	buf := make([]byte, 1)
	var got []byte
	for len(got) < 6 {
		n, err := c.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	require.Equal(t, "abcdef", string(got))
}

func TestBufferedConnReportsAFailedFlush(t *testing.T) {
	c, srv := pair(t)
	require.NoError(t, srv.Close())
	// Writes succeed into the buffer until a flush hits the closed peer;
	// from then on every write fails and reads see the closed connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Write(make([]byte, 1024))
		if err != nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "writes to a closed peer never failed")
		time.Sleep(time.Millisecond)
	}
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err)
}
