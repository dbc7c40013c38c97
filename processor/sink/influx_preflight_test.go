package sink

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Opening the InfluxDB sink sends one empty write: a 2xx opens it, a refused
// token or a missing bucket ends Open at once with InfluxDB's answer, and
// any other failure (the server starting, a 503) is retried.
func TestInfluxOpenPreflight(t *testing.T) {
	tests := []struct {
		name     string
		answers  []int // status of each attempt; the last repeats
		wantErr  string
		attempts int32
	}{
		{"writable", []int{http.StatusNoContent}, "", 1},
		{"refused token", []int{http.StatusUnauthorized}, `401 Unauthorized: {"code":"unauthorized","message":"unauthorized access"}`, 1},
		{"forbidden", []int{http.StatusForbidden}, "403 Forbidden", 1},
		{"missing bucket", []int{http.StatusNotFound}, `refused a write to bucket "b" of org "o": 404 Not Found`, 1},
		{"starting, then writable", []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusNoContent}, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(attempts.Add(1)) - 1
				require.Equal(t, "/api/v2/write", r.URL.Path)
				require.Equal(t, "b", r.URL.Query().Get("bucket"))
				require.Equal(t, "o", r.URL.Query().Get("org"))
				require.Equal(t, "Token tok", r.Header.Get("Authorization"))
				body, _ := io.ReadAll(r.Body)
				require.Empty(t, body, "the preflight writes nothing")
				status := tt.answers[min(n, len(tt.answers)-1)]
				if status == http.StatusUnauthorized {
					w.WriteHeader(status)
					_, _ = io.WriteString(w, `{"code":"unauthorized","message":"unauthorized access"}`)
					return
				}
				w.WriteHeader(status)
			}))
			defer srv.Close()
			var c InfluxConfig
			fs := flag.NewFlagSet("", flag.PanicOnError)
			c.RegisterFlags(fs)
			require.NoError(t, fs.Parse([]string{"-influx.url", srv.URL, "-influx.org", "o", "-influx.bucket", "b", "-influx.token", "tok"}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := c.Spec(slog.New(slog.NewTextHandler(io.Discard, nil))).Open(ctx)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NoError(t, s.Close())
			} else {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "influxdb "+srv.URL)
			}
			require.Equal(t, tt.attempts, attempts.Load())
		})
	}
}
