package sink

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"

	"github.com/sensorflow/sensorflow/internal/retry"
	"github.com/sensorflow/sensorflow/internal/tlsx"
)

// InfluxConfig says how to reach InfluxDB. The same settings work on
// InfluxDB 2.x (token, org, bucket) and on 1.8 with flux-enabled (token
// "user:password" or empty, org ignored, bucket "database/retention-policy"
// or just "database").
type InfluxConfig struct {
	Enabled    bool
	URL        string
	Token      string
	TokenFile  string
	Org        string
	Bucket     string
	BatchLines int
	Gzip       bool
	Timeout    time.Duration
	TLS        tlsx.Config
}

// RegisterFlags registers the influx.* flags.
func (c *InfluxConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "influx.enabled", true, "Write readings and alerts to InfluxDB.")
	fs.StringVar(&c.URL, "influx.url", "http://127.0.0.1:8086", "InfluxDB URL.")
	fs.StringVar(&c.Token, "influx.token", "", "InfluxDB token (1.8: user:password or empty); prefer SENSORFLOW_INFLUX_TOKEN or -influx.token-file.")
	fs.StringVar(&c.TokenFile, "influx.token-file", "", "File holding the InfluxDB token.")
	fs.StringVar(&c.Org, "influx.org", "sensorflow", "InfluxDB organization (ignored by 1.8).")
	fs.StringVar(&c.Bucket, "influx.bucket", "sensorflow", "InfluxDB bucket (1.8: database or database/retention-policy).")
	fs.IntVar(&c.BatchLines, "influx.batch-lines", 5000, "Lines per InfluxDB write request; larger batches are split.")
	fs.BoolVar(&c.Gzip, "influx.gzip", false, "Compress write requests with gzip: about a quarter of the processor's CPU, worth it only over a slow link.")
	fs.DurationVar(&c.Timeout, "influx.timeout", 10*time.Second, "Timeout of one InfluxDB request.")
	c.TLS.RegisterFlags(fs, "influx")
}

// Validate checks the settings without connecting.
func (c *InfluxConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("influx.url %q: want http(s)://host:port", c.URL)
	}
	if c.Bucket == "" {
		return errors.New("influx.bucket is empty")
	}
	if c.BatchLines < 1 {
		return errors.New("influx.batch-lines must be at least 1")
	}
	return nil
}

func (c *InfluxConfig) token() (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("reading influx.token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// NewClient returns an InfluxDB client for these settings; the caller closes it.
func (c *InfluxConfig) NewClient() (influxdb2.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	token, err := c.token()
	if err != nil {
		return nil, err
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPRequestTimeout(uint(c.Timeout / time.Second)).
		SetUseGZip(c.Gzip).
		SetMaxRetries(0)
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("influx tls: %w", err)
	}
	if tc != nil {
		opts.SetTLSConfig(tc)
	}
	return influxdb2.NewClientWithOptions(c.URL, token, opts), nil
}

// Influx writes readings (measurement "readings"), their anomaly scores
// (measurement "scores", when the batch has them) and alert events
// (measurement "alerts") with the blocking write API, so that a failed write
// surfaces as an error before the processor commits. Points take the
// reading's time, so a replayed batch overwrites itself: writes are idempotent.
type Influx struct {
	client influxdb2.Client
	write  api.WriteAPIBlocking
	batch  int
}

// Spec returns the sink's Spec for the processor: opening it runs
// Preflight, retrying with backoff while InfluxDB is unreachable, until ctx
// ends. A refused token, an untrusted certificate or a missing bucket ends
// Open at once with the server's answer.
func (c InfluxConfig) Spec(log *slog.Logger) Spec {
	return Spec{Name: "influx", Open: func(ctx context.Context) (Sink, error) {
		if err := retry.Forever(ctx, log, "connecting to influxdb", func() error { return c.Preflight(ctx) }); err != nil {
			return nil, err
		}
		return NewInflux(c)
	}}
}

// Preflight sends InfluxDB an empty write to the bucket: it answers 204
// when the token may write there, and stores nothing. Errors name the URL
// and carry InfluxDB's own message; a refused token or a missing bucket is
// marked permanent.
func (c *InfluxConfig) Preflight(ctx context.Context) error {
	if err := c.Validate(); err != nil {
		return retry.Permanent(err)
	}
	token, err := c.token()
	if err != nil {
		return retry.Permanent(err)
	}
	tc, err := c.TLS.Build()
	if err != nil {
		return retry.Permanent(fmt.Errorf("influx tls: %w", err))
	}
	q := url.Values{"org": {c.Org}, "bucket": {c.Bucket}, "precision": {"ns"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.URL, "/")+"/api/v2/write?"+q.Encode(), http.NoBody)
	if err != nil {
		return retry.Permanent(fmt.Errorf("influxdb %s: %w", c.URL, err))
	}
	if token != "" {
		req.Header.Set("Authorization", "Token "+token)
	}
	cl := &http.Client{Timeout: c.Timeout, Transport: &http.Transport{TLSClientConfig: tc}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("influxdb %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound:
		return retry.Permanent(fmt.Errorf("influxdb %s refused a write to bucket %q of org %q: %s: %s", c.URL, c.Bucket, c.Org, resp.Status, strings.TrimSpace(string(body))))
	default:
		return fmt.Errorf("influxdb %s: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(body)))
	}
}

// NewInflux returns an InfluxDB sink. It does not connect.
func NewInflux(cfg InfluxConfig) (*Influx, error) {
	cl, err := cfg.NewClient()
	if err != nil {
		return nil, err
	}
	return &Influx{client: cl, write: cl.WriteAPIBlocking(cfg.Org, cfg.Bucket), batch: cfg.BatchLines}, nil
}

// Write stores b in requests of at most BatchLines lines.
func (s *Influx) Write(ctx context.Context, b Batch) error {
	// One body per request: lines appended in place, no string per line.
	body := make([]byte, 0, 160*min(2*b.Len()+len(b.Alerts), s.batch))
	lines := 0
	flush := func() error {
		if lines == 0 {
			return nil
		}
		if err := s.write.WriteRecord(ctx, string(body[:len(body)-1])); err != nil {
			return fmt.Errorf("writing %d lines to influxdb: %w", lines, err)
		}
		body, lines = body[:0], 0
		return nil
	}
	buf := make([]byte, 0, 256)
	add := func(line []byte) error {
		body = append(append(body, line...), '\n')
		if lines++; lines >= s.batch {
			return flush()
		}
		return nil
	}
	if err := encodeLines(b, buf, add); err != nil {
		return err
	}
	return flush()
}

// encodeLines calls emit with each line of b's line protocol, without the
// newline: a readings line and a scores line per reading, then a line per
// alert. line is only valid during the call.
func encodeLines(b Batch, buf []byte, emit func(line []byte) error) error {
	k := 0
	for i := range b.Readings {
		r := &b.Readings[i]
		names := r.MetricNames() // sorted once for both lines
		buf = appendReadingLine(buf[:0], r, names)
		if err := emit(buf); err != nil {
			return err
		}
		if n := len(names); k+n <= len(b.Scores) {
			buf = appendScoreLine(buf[:0], r, names, b.Scores[k:k+n])
			k += n
			if err := emit(buf); err != nil {
				return err
			}
		}
	}
	for i := range b.Alerts {
		buf = appendAlertLine(buf[:0], &b.Alerts[i])
		if err := emit(buf); err != nil {
			return err
		}
	}
	return nil
}

// AppendLineProtocol appends the line protocol the InfluxDB sink writes for
// b, each line ended by a newline.
func AppendLineProtocol(dst []byte, b Batch) []byte {
	_ = encodeLines(b, make([]byte, 0, 256), func(line []byte) error {
		dst = append(append(dst, line...), '\n')
		return nil
	})
	return dst
}

func (s *Influx) Ping(ctx context.Context) error {
	ok, err := s.client.Ping(ctx)
	if err != nil {
		return fmt.Errorf("pinging influxdb: %w", err)
	}
	if !ok {
		return errors.New("influxdb ping failed")
	}
	return nil
}

// Close releases the client.
func (s *Influx) Close() error {
	s.client.Close()
	return nil
}
