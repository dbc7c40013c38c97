// Package retry retries an operation against an outage with capped
// exponential backoff until it succeeds or its context ends, logging at most
// one line every few seconds so an outage does not flood the log.
package retry

import (
	"context"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy bounds the backoff between attempts.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
}

// Default backs off from 100 ms to 5 s.
var Default = Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Forever runs op until it returns nil or ctx ends (then it returns the
// context's error), or until op returns an error that is Permanent or Fatal
// (a refused credential or an untrusted certificate), which it returns. Each failure is passed to onErr (may be nil) and logged
// as a warning with what, throttled to one line per 10 s.
func (p Policy) Forever(ctx context.Context, log *slog.Logger, what string, op func() error, onErr func(error)) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = p.Initial, p.Max
	var lastLog time.Time
	failures := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := op()
		if Fatal(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(b),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			failures++
			if onErr != nil {
				onErr(err)
			}
			if time.Since(lastLog) >= 10*time.Second {
				log.Warn("retrying", "op", what, "failures", failures, "next_in", next.String(), "err", err)
				lastLog = time.Now()
			}
		}))
	if err == nil && failures > 0 {
		log.Info("recovered", "op", what, "failures", failures)
	}
	return err
}

// Forever retries op with the Default policy.
func Forever(ctx context.Context, log *slog.Logger, what string, op func() error) error {
	return Default.Forever(ctx, log, what, op, nil)
}

// Permanent marks err as not worth retrying: Forever returns it at once.
func Permanent(err error) error { return backoff.Permanent(err) }
