package sink

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/sensorflow/sensorflow/deploy"
	"github.com/sensorflow/sensorflow/internal/retry"
	"github.com/sensorflow/sensorflow/internal/tlsx"
)

// CassandraConfig says how to reach Cassandra and how to write to it.
type CassandraConfig struct {
	Enabled      bool
	Hosts        string
	Keyspace     string
	Replication  string
	ApplySchema  bool
	Consistency  string
	Username     string
	Password     string
	PasswordFile string
	Timeout      time.Duration
	Concurrency  int
	TTL          time.Duration
	TLS          tlsx.Config
	// AddressTranslator, when set, rewrites the node addresses Cassandra
	// announces (for NAT, or a test proxy). It has no flag.
	AddressTranslator gocql.AddressTranslator
}

// RegisterFlags registers the cassandra.* flags.
func (c *CassandraConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "cassandra.enabled", true, "Archive readings and alerts in Cassandra.")
	fs.StringVar(&c.Hosts, "cassandra.hosts", "127.0.0.1:9042", "Comma-separated Cassandra contact points (host or host:port).")
	fs.StringVar(&c.Keyspace, "cassandra.keyspace", "sensorflow", "Cassandra keyspace.")
	fs.StringVar(&c.Replication, "cassandra.replication", "{'class': 'SimpleStrategy', 'replication_factor': 1}",
		"Replication of the keyspace when Sensorflow creates it (production: {'class': 'NetworkTopologyStrategy', 'dc1': 3}).")
	fs.BoolVar(&c.ApplySchema, "cassandra.apply-schema", true, "Create the keyspace and tables at start-up (off for locked-down clusters).")
	fs.StringVar(&c.Consistency, "cassandra.consistency", "LOCAL_ONE", "Write consistency (production: LOCAL_QUORUM).")
	fs.StringVar(&c.Username, "cassandra.username", "", "Cassandra username (empty: no authentication).")
	fs.StringVar(&c.Password, "cassandra.password", "", "Cassandra password; prefer SENSORFLOW_CASSANDRA_PASSWORD or -cassandra.password-file.")
	fs.StringVar(&c.PasswordFile, "cassandra.password-file", "", "File holding the Cassandra password.")
	fs.DurationVar(&c.Timeout, "cassandra.timeout", 10*time.Second, "Timeout of one Cassandra request.")
	fs.IntVar(&c.Concurrency, "cassandra.concurrency", 64, "Cassandra writes in flight at once.")
	fs.DurationVar(&c.TTL, "cassandra.ttl", 30*24*time.Hour, "Time to live of archived readings.")
	c.TLS.RegisterFlags(fs, "cassandra")
}

var keyspaceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Validate checks the settings without connecting.
func (c *CassandraConfig) Validate() error {
	if len(c.hostList()) == 0 {
		return errors.New("cassandra.hosts is empty")
	}
	if !keyspaceName.MatchString(c.Keyspace) {
		return fmt.Errorf("cassandra.keyspace %q: want [a-z][a-z0-9_]{0,47}", c.Keyspace)
	}
	if _, err := parseConsistency(c.Consistency); err != nil {
		return err
	}
	if c.Concurrency < 1 {
		return errors.New("cassandra.concurrency must be at least 1")
	}
	if c.TTL < time.Second {
		return errors.New("cassandra.ttl must be at least 1s")
	}
	if !strings.HasPrefix(strings.TrimSpace(c.Replication), "{") {
		return fmt.Errorf("cassandra.replication %q: want a CQL map like {'class': 'SimpleStrategy', 'replication_factor': 1}", c.Replication)
	}
	return nil
}

func (c *CassandraConfig) hostList() []string {
	var out []string
	for _, h := range strings.Split(c.Hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

func parseConsistency(s string) (gocql.Consistency, error) {
	var c gocql.Consistency
	if err := c.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("cassandra.consistency %q: %w", s, err)
	}
	return c, nil
}

// Cluster returns a gocql cluster configuration with token-aware host
// selection, the configured consistency, and retries with backoff (which
// gocql applies to idempotent queries only). keyspace may be empty.
func (c *CassandraConfig) Cluster(keyspace string) (*gocql.ClusterConfig, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cons, _ := parseConsistency(c.Consistency)
	cl := gocql.NewCluster(c.hostList()...)
	cl.Keyspace = keyspace
	cl.Consistency = cons
	cl.Timeout = c.Timeout
	cl.ConnectTimeout = c.Timeout
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	cl.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 3, Min: 100 * time.Millisecond, Max: 2 * time.Second}
	cl.ReconnectionPolicy = &gocql.ExponentialReconnectionPolicy{MaxRetries: 10, InitialInterval: time.Second, MaxInterval: 10 * time.Second}
	cl.Logger = discardLogger{}
	cl.AddressTranslator = c.AddressTranslator
	if c.Username != "" {
		pw := c.Password
		if c.PasswordFile != "" {
			b, err := os.ReadFile(c.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("reading cassandra.password-file: %w", err)
			}
			pw = strings.TrimSpace(string(b))
		}
		cl.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: pw}
	}
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("cassandra tls: %w", err)
	}
	if tc != nil {
		cl.SslOpts = &gocql.SslOptions{Config: tc, EnableHostVerification: !c.TLS.Insecure}
	}
	return cl, nil
}

type discardLogger struct{}

func (discardLogger) Print(...any)          {}
func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// SchemaStatements returns deploy/cassandra/schema.cql for this keyspace and
// replication, one statement per element.
func (c *CassandraConfig) SchemaStatements() []string {
	var code []string
	for _, l := range strings.Split(deploy.CassandraSchema, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
			code = append(code, l)
		}
	}
	var out []string
	for _, stmt := range strings.Split(strings.Join(code, "\n"), ";") {
		s := strings.TrimSpace(stmt)
		if s == "" {
			continue
		}
		s = strings.ReplaceAll(s, "sensorflow.", c.Keyspace+".")
		if strings.HasPrefix(s, "CREATE KEYSPACE") {
			s = "CREATE KEYSPACE IF NOT EXISTS " + c.Keyspace + " WITH replication = " + c.Replication
		}
		out = append(out, s)
	}
	return out
}

// Session connects to Cassandra with these settings; keyspace may be empty.
// The caller closes the session.
func (c *CassandraConfig) Session(keyspace string) (*gocql.Session, error) {
	cl, err := c.Cluster(keyspace)
	if err != nil {
		return nil, err
	}
	sess, err := cl.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connecting to cassandra at %s: %w", c.Hosts, err)
	}
	return sess, nil
}

// ApplySchemaNow creates the keyspace and tables when they are missing. An
// error the server answered with (bad replication, no permission) is
// permanent: retrying cannot fix it.
func (c *CassandraConfig) ApplySchemaNow(ctx context.Context) error {
	sess, err := c.Session("")
	if err != nil {
		return err
	}
	defer sess.Close()
	for _, stmt := range c.SchemaStatements() {
		if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
			err = fmt.Errorf("applying cassandra schema (%s): %w", firstLine(stmt), err)
			if IsPermanent(err) {
				return retry.Permanent(err)
			}
			return err
		}
	}
	return nil
}

// IsPermanent reports whether Cassandra answered err as a request error that
// retrying cannot fix (syntax, invalid, unauthorized, ...), as opposed to an
// outage or overload.
func IsPermanent(err error) bool {
	var re gocql.RequestError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Code() {
	case gocql.ErrCodeSyntax, gocql.ErrCodeInvalid, gocql.ErrCodeUnauthorized, gocql.ErrCodeConfig, gocql.ErrCodeCredentials:
		return true
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// Cassandra archives readings (table readings, one row per device, metric
// and timestamp) and alerts (alerts_by_device, alerts_by_day) and keeps the
// devices table current. Every write is an idempotent upsert keyed by the
// data itself, so a replayed batch leaves one row per reading.
type Cassandra struct {
	sess        *gocql.Session
	concurrency int
	ttl         int

	mu      sync.Mutex
	devices map[string]*deviceRow // what the devices table already holds
}

// deviceRow is what this sink last wrote to a device's row.
type deviceRow struct {
	first, last time.Time
	metrics     map[string]struct{}
}

// lastSeenEvery is the granularity of devices.last_seen: a device's row is
// rewritten when something else changed or last_seen moved this far.
const lastSeenEvery = time.Minute

// Spec returns the sink's Spec for the processor: opening it connects,
// retrying with backoff while Cassandra is unreachable (it may still be
// starting), until ctx ends.
func (c CassandraConfig) Spec(log *slog.Logger) Spec {
	return Spec{Name: "cassandra", Open: func(ctx context.Context) (Sink, error) {
		var s *Cassandra
		err := retry.Forever(ctx, log, "connecting to cassandra", func() error {
			var err error
			s, err = NewCassandra(ctx, c)
			return err
		})
		return s, err
	}}
}

// NewCassandra connects to Cassandra (applying the schema first when
// configured) and returns the sink.
func NewCassandra(ctx context.Context, cfg CassandraConfig) (*Cassandra, error) {
	if cfg.ApplySchema {
		if err := cfg.ApplySchemaNow(ctx); err != nil {
			return nil, err
		}
	}
	sess, err := cfg.Session(cfg.Keyspace)
	if err != nil {
		return nil, err
	}
	return &Cassandra{sess: sess, concurrency: cfg.Concurrency, ttl: int(cfg.TTL / time.Second), devices: map[string]*deviceRow{}}, nil
}

const (
	// CQLInsertReading is the sink's statement for one reading of one
	// metric; benchmarks use it for their plain-gocql ceiling.
	CQLInsertReading = `INSERT INTO readings (device_id, metric, day, ts, value, site, seq) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?`
	cqlAlertColumns  = `started_at, alert_id, site, metric, kind, severity, state, score, value, expected_low, expected_high, ts, resolved_at, message`
	cqlInsertAlertD  = `INSERT INTO alerts_by_device (device_id, ` + cqlAlertColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	cqlInsertAlertY  = `INSERT INTO alerts_by_day (day, device_id, ` + cqlAlertColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// last_seen is written with the reading's time as write timestamp, so the
	// latest reading wins whatever order batches arrive in; first_seen with
	// an inverted one, so the earliest wins.
	cqlDeviceLast  = `UPDATE devices USING TIMESTAMP ? SET site = ?, last_seen = ?, metrics = metrics + ? WHERE device_id = ?`
	cqlDeviceFirst = `UPDATE devices USING TIMESTAMP ? SET first_seen = ? WHERE device_id = ?`
	invertedBase   = int64(1) << 53
)

// Write stores b as single-partition, idempotent upserts with at most
// Concurrency requests in flight; it never uses a multi-partition batch.
func (s *Cassandra) Write(ctx context.Context, b Batch) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	exec := func(q *gocql.Query) {
		g.Go(func() error {
			return q.WithContext(gctx).Idempotent(true).Exec()
		})
	}
	type device struct {
		site        string
		first, last time.Time
		metrics     map[string]struct{}
	}
	devices := map[string]*device{}
	for i := range b.Readings {
		r := &b.Readings[i]
		day := civilDay(r.TS)
		for _, name := range r.MetricNames() {
			exec(s.sess.Query(CQLInsertReading, r.DeviceID, name, day, r.TS, r.Metrics[name], r.Site, r.Seq, s.ttl))
		}
		d := devices[r.DeviceID]
		if d == nil {
			d = &device{site: r.Site, first: r.TS, last: r.TS, metrics: map[string]struct{}{}}
			devices[r.DeviceID] = d
		}
		if r.TS.Before(d.first) {
			d.first = r.TS
		}
		if r.TS.After(d.last) {
			d.last, d.site = r.TS, r.Site
		}
		for name := range r.Metrics {
			d.metrics[name] = struct{}{}
		}
	}
	for i := range b.Alerts {
		a := &b.Alerts[i]
		cols := []any{a.StartedAt, a.AlertID, a.Site, a.Metric, a.Kind, a.Severity, a.State, a.Score, a.Value,
			a.ExpectedLow, a.ExpectedHigh, a.TS, a.ResolvedAt, a.Message}
		exec(s.sess.Query(cqlInsertAlertD, append([]any{a.DeviceID}, cols...)...))
		exec(s.sess.Query(cqlInsertAlertY, append([]any{civilDay(a.StartedAt), a.DeviceID}, cols...)...))
	}
	// Rewrite a device's row only when it changed: concurrent updates of the
	// same few partitions in every batch would cost Cassandra more than the
	// readings themselves.
	type deviceUpdate struct {
		id   string
		seen *device
	}
	var updated []deviceUpdate
	var deviceQueries []*gocql.Query
	s.mu.Lock()
	for id, d := range devices {
		known := s.devices[id]
		var names []string
		for name := range d.metrics {
			if known == nil {
				names = append(names, name)
			} else if _, ok := known.metrics[name]; !ok {
				names = append(names, name)
			}
		}
		if known == nil || len(names) > 0 || d.last.Sub(known.last) >= lastSeenEvery {
			deviceQueries = append(deviceQueries, s.sess.Query(cqlDeviceLast, d.last.UnixMicro(), d.site, d.last, names, id))
		}
		if known == nil || d.first.Before(known.first) {
			deviceQueries = append(deviceQueries, s.sess.Query(cqlDeviceFirst, invertedBase-d.first.UnixMicro(), d.first, id))
		}
		updated = append(updated, deviceUpdate{id, d})
	}
	s.mu.Unlock()
	for _, q := range deviceQueries {
		exec(q)
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("writing batch to cassandra: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range updated {
		known := s.devices[u.id]
		if known == nil {
			known = &deviceRow{first: u.seen.first, last: u.seen.last, metrics: map[string]struct{}{}}
			s.devices[u.id] = known
		}
		if u.seen.first.Before(known.first) {
			known.first = u.seen.first
		}
		if u.seen.last.Sub(known.last) >= lastSeenEvery {
			known.last = u.seen.last
		}
		for name := range u.seen.metrics {
			known.metrics[name] = struct{}{}
		}
	}
	return nil
}

// civilDay is the UTC date of t, the day bucket of a partition.
func civilDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Session exposes the session for read paths (the query command, tests).
func (s *Cassandra) Session() *gocql.Session { return s.sess }

// Close closes the session.
func (s *Cassandra) Close() error {
	s.sess.Close()
	return nil
}
