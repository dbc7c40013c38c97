package batch

import (
	"context"
	"time"
)

// Drain returns a context for the work that must finish after a shutdown
// signal: storing, writing and acknowledging the batch in hand. It carries
// parent's values, ends grace after parent ends, and ends at once when the
// returned cancel is called (call it when the drain is done).
func Drain(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { time.AfterFunc(grace, cancel) })
	return ctx, func() {
		stop()
		cancel()
	}
}
