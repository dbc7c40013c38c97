package retry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var fast = Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}

func TestForever(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		permanent bool
		wantCalls int
		wantErr   bool
	}{
		{name: "succeeds at once", failures: 0, wantCalls: 1},
		{name: "retries until it succeeds", failures: 5, wantCalls: 6},
		{name: "a permanent error stops at once", failures: 5, permanent: true, wantCalls: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, seen := 0, 0
			err := fast.Forever(context.Background(), quiet, "op", func() error {
				calls++
				if calls <= tt.failures {
					if tt.permanent {
						return Permanent(errors.New("bad config"))
					}
					return errors.New("down")
				}
				return nil
			}, func(error) { seen++ })
			require.Equal(t, tt.wantCalls, calls)
			if tt.wantErr {
				require.EqualError(t, err, "bad config")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.failures, seen, "onErr sees every failure")
		})
	}
}

// An outage that outlasts the context ends with the context's error.
func TestForeverEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	calls := 0
	err := fast.Forever(ctx, quiet, "op", func() error { calls++; return errors.New("down") }, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Greater(t, calls, 2)
}
