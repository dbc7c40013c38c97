// Package batch holds the stage mechanisms every Sensorflow pipeline stage
// shares: collecting items from a channel into batches bounded in size and
// wait (Collector), and the context that lets the batch in hand finish after
// a shutdown signal (Drain). It imports no Sensorflow package.
package batch

import (
	"context"
	"errors"
	"time"
)

// Policy says when a batch is complete: once it holds Max items (or Max
// of their size, for a collector made by NewSizedCollector), or, with
// a Linger of 0 (adaptive), as soon as the input runs dry: what is in hand
// goes at once, and a batch grows only while more is already waiting, as
// it does while the stage downstream is busy with the previous one (Kafka's
// producer with linger.ms=0; Nagle's algorithm the other way round). A
// positive Linger instead waits that long after the first item for more.
type Policy struct {
	Max    int
	Linger time.Duration
}

// Validate checks the bounds; name prefixes the message (a flag prefix
// such as "bridge").
func (p Policy) Validate(name string) error {
	if p.Max < 1 || p.Linger < 0 {
		return errors.New(name + ".batch-size must be positive and " + name + ".linger not negative")
	}
	return nil
}

// Collector fills batches from a channel under a Policy. One goroutine calls
// Next; the Collector owns its timer and nothing else.
type Collector[T any] struct {
	in    <-chan T
	p     Policy
	size  func(T) int // nil: each item counts 1
	timer *time.Timer
}

// NewCollector returns a collector reading from in.
func NewCollector[T any](in <-chan T, p Policy) *Collector[T] {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Collector[T]{in: in, p: p, timer: t}
}

// NewSizedCollector returns a collector reading from in whose batches are
// complete once the sizes of their items add up to Policy.Max (items that
// are themselves batches, counted in what they hold).
func NewSizedCollector[T any](in <-chan T, p Policy, size func(T) int) *Collector[T] {
	c := NewCollector(in, p)
	c.size = size
	return c
}

func (c *Collector[T]) sizeOf(v T) int {
	if c.size == nil {
		return 1
	}
	return c.size(v)
}

// Buf returns an empty buffer for the next batch, sized for the items
// waiting now (at least 16, at most Policy.Max; append grows it past that):
// at a low rate a batch of a few items does not allocate, and clear, room
// for Max of them.
func (c *Collector[T]) Buf() []T {
	return make([]T, 0, min(c.p.Max, max(16, len(c.in)+1)))
}

// Next appends the next batch to buf[:0] and returns it. It waits for a
// first item until ctx ends or in is closed and empty (then it returns buf[:0]
// and false), then keeps adding items until the batch holds Policy.Max, ctx
// ends, in is closed, or (adaptive) no item is waiting, or (Linger > 0)
// Linger has passed since the first item. A batch that began is always
// returned whole, with true.
func (c *Collector[T]) Next(ctx context.Context, buf []T) ([]T, bool) {
	out := buf[:0]
	n := 0 // the batch's size so far
	select {
	case v, ok := <-c.in:
		if !ok {
			return out, false
		}
		out, n = append(out, v), c.sizeOf(v)
	case <-ctx.Done():
		return out, false
	}
	if c.p.Linger == 0 {
		for n < c.p.Max {
			select {
			case v, ok := <-c.in:
				if !ok {
					return out, true
				}
				out, n = append(out, v), n+c.sizeOf(v)
			default:
				return out, true
			}
		}
		return out, true
	}
	c.timer.Reset(c.p.Linger)
	defer c.timer.Stop()
	for n < c.p.Max {
		// What is waiting is taken without the three-way select, which
		// costs several times a plain receive.
		select {
		case v, ok := <-c.in:
			if !ok {
				return out, true
			}
			out, n = append(out, v), n+c.sizeOf(v)
			continue
		default:
		}
		select {
		case v, ok := <-c.in:
			if !ok {
				return out, true
			}
			out, n = append(out, v), n+c.sizeOf(v)
		case <-c.timer.C:
			return out, true
		case <-ctx.Done():
			return out, true
		}
	}
	return out, true
}
