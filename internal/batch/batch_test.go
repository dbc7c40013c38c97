package batch

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCollector(t *testing.T) {
	tests := []struct {
		name   string
		queued []int
		close  bool
		policy Policy
		want   []int
		wantOK bool
		cancel bool
	}{
		{name: "full batch without waiting", queued: []int{1, 2, 3, 4, 5}, policy: Policy{Max: 3, Linger: time.Hour}, want: []int{1, 2, 3}, wantOK: true},
		{name: "linger ends a short batch", queued: []int{1, 2}, policy: Policy{Max: 10, Linger: 20 * time.Millisecond}, want: []int{1, 2}, wantOK: true},
		{name: "closed input ends a batch", queued: []int{1, 2}, close: true, policy: Policy{Max: 10, Linger: time.Hour}, want: []int{1, 2}, wantOK: true},
		{name: "closed empty input", close: true, policy: Policy{Max: 10, Linger: time.Hour}, want: []int{}, wantOK: false},
		{name: "context ended before the first item", cancel: true, policy: Policy{Max: 10, Linger: time.Hour}, want: []int{}, wantOK: false},
		{name: "adaptive: what is waiting, at once", queued: []int{1, 2, 3}, policy: Policy{Max: 10}, want: []int{1, 2, 3}, wantOK: true},
		{name: "adaptive: at most Max", queued: []int{1, 2, 3, 4}, policy: Policy{Max: 3}, want: []int{1, 2, 3}, wantOK: true},
		{name: "adaptive: closed input", queued: []int{1}, close: true, policy: Policy{Max: 3}, want: []int{1}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make(chan int, 10)
			for _, v := range tt.queued {
				in <- v
			}
			if tt.close {
				close(in)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			got, ok := NewCollector(in, tt.policy).Next(ctx, nil)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, append([]int{}, got...))
		})
	}
}

// A batch that began is returned whole when the context ends during its
// linger, so the caller can drain it.
func TestCollectorContextEndsDuringLinger(t *testing.T) {
	in := make(chan int, 1)
	in <- 7
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	got, ok := NewCollector(in, Policy{Max: 10, Linger: time.Hour}).Next(ctx, nil)
	require.True(t, ok)
	require.Equal(t, []int{7}, got)
}

// Batches come out in the order the items went in, and the collector
// reuses the caller's buffer.
func TestCollectorKeepsOrderAndReusesBuffer(t *testing.T) {
	in := make(chan int, 100)
	for i := range 100 {
		in <- i
	}
	close(in)
	c := NewCollector(in, Policy{Max: 7, Linger: time.Hour})
	buf := make([]int, 0, 7)
	var all []int
	for {
		b, ok := c.Next(context.Background(), buf)
		if !ok {
			break
		}
		require.LessOrEqual(t, len(b), 7)
		require.Equal(t, &buf[:1][0], &b[:1][0], "the batch lives in the caller's buffer")
		all = append(all, b...)
	}
	want := make([]int, 100)
	for i := range want {
		want[i] = i
	}
	require.Equal(t, want, all)
}

func TestPolicyValidate(t *testing.T) {
	require.NoError(t, Policy{Max: 1, Linger: time.Millisecond}.Validate("bridge"))
	require.NoError(t, Policy{Max: 1}.Validate("bridge"), "0 is adaptive")
	require.EqualError(t, Policy{Max: 0, Linger: time.Millisecond}.Validate("bridge"), "bridge.batch-size must be positive and bridge.linger not negative")
	require.Error(t, Policy{Max: 1, Linger: -time.Second}.Validate("processor"))
}

// Adaptive batches never wait for more: a lone item goes at once, and a
// batch grows with what piled up while the caller was busy.
func TestAdaptiveCollectorGrowsWithTheBacklog(t *testing.T) {
	in := make(chan int, 100)
	c := NewCollector(in, Policy{Max: 50})
	in <- 1
	got, ok := c.Next(context.Background(), nil)
	require.True(t, ok)
	require.Equal(t, []int{1}, got, "no wait for a second item")
	for i := range 80 { // piled up while the previous batch was written
		in <- i
	}
	got, _ = c.Next(context.Background(), nil)
	require.Len(t, got, 50)
	got, _ = c.Next(context.Background(), nil)
	require.Len(t, got, 30)
}

// A buffer is sized for what waits, not for the largest batch.
func TestBufIsSizedByTheBacklog(t *testing.T) {
	in := make(chan int, 5000)
	c := NewCollector(in, Policy{Max: 2000})
	require.Equal(t, 16, cap(c.Buf()), "nothing waiting")
	for i := range 100 {
		in <- i
	}
	require.Equal(t, 101, cap(c.Buf()))
	for i := range 4000 {
		in <- i
	}
	require.Equal(t, 2000, cap(c.Buf()), "never more than Max")
	got, ok := c.Next(context.Background(), c.Buf())
	require.True(t, ok)
	require.Len(t, got, 2000)
	got, _ = c.Next(context.Background(), c.Buf())
	require.Len(t, got, 2000)
	require.Equal(t, 101, cap(c.Buf()), "sized by what is left")
	buf := c.Buf()
	got, _ = c.Next(context.Background(), buf)
	require.Len(t, got, 100)
	require.Same(t, &buf[:1][0], &got[0], "the batch fills the buffer it was given")
}

func TestDrain(t *testing.T) {
	parent, stop := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	ctx, cancel := Drain(parent, 50*time.Millisecond)
	defer cancel()
	require.Equal(t, "v", ctx.Value(ctxKey{}), "carries the parent's values")
	stop()
	require.NoError(t, ctx.Err(), "outlives its parent by the grace period")
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the drain context did not end after its grace period")
	}

	ctx, cancel = Drain(context.Background(), time.Hour)
	cancel()
	require.Error(t, ctx.Err(), "cancel ends it at once")
}

type ctxKey struct{}

// BenchmarkCollectorLinger: batches of 1000 from a channel that always
// holds more, as the bridge's queue does under load (ns per item).
func BenchmarkCollectorLinger(b *testing.B) {
	in := make(chan int, 4096)
	c := NewCollector(in, Policy{Max: 1000, Linger: 5 * time.Millisecond})
	buf := make([]int, 0, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for len(in) < cap(in)-1 {
			in <- 1
		}
		for range 3 {
			buf, _ = c.Next(ctx, buf)
		}
	}
}

// A sized collector completes a batch once its items' sizes reach Max, in
// both modes; an item larger than Max alone is a batch.
func TestSizedCollector(t *testing.T) {
	for _, p := range []Policy{{Max: 10}, {Max: 10, Linger: time.Hour}} {
		in := make(chan int, 10)
		for _, v := range []int{4, 4, 4, 12, 1} {
			in <- v
		}
		close(in) // the last batch ends with the input, not the linger
		c := NewSizedCollector(in, p, func(v int) int { return v })
		var got [][]int
		for range 3 {
			b, ok := c.Next(context.Background(), nil)
			require.True(t, ok)
			got = append(got, b)
		}
		require.Equal(t, [][]int{{4, 4, 4}, {12}, {1}}, got, "linger %s", p.Linger)
	}
}
