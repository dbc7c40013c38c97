// Package kafkax holds the Kafka connection settings and topic names every
// Sensorflow component shares, and builds kafka-go writers, readers and
// admin clients from them with Sensorflow's delivery guarantees.
package kafkax

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/sensorflow/sensorflow/internal/retry"
	"github.com/sensorflow/sensorflow/internal/tlsx"
)

// Config says how to reach Kafka and which topics Sensorflow uses. It is a
// value; copy it freely.
type Config struct {
	Brokers           string
	ReadingsTopic     string
	AlertsTopic       string
	RawAlertsTopic    string
	DeadLetterTopic   string
	StateTopic        string
	Partitions        int
	ReplicationFactor int
	CreateTopics      bool
	SessionTimeout    time.Duration
	SASLMechanism     string
	SASLUsername      string
	SASLPassword      string
	SASLPasswordFile  string
	TLS               tlsx.Config
}

// RegisterFlags registers the kafka.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Brokers, "kafka.brokers", "127.0.0.1:9092", "Comma-separated Kafka bootstrap brokers.")
	fs.StringVar(&c.ReadingsTopic, "kafka.readings-topic", "sensorflow.readings", "Kafka topic for normalized readings (key: device id).")
	fs.StringVar(&c.AlertsTopic, "kafka.alerts-topic", "sensorflow.alerts", "Kafka topic for the alerts users subscribe to: device alerts and site incidents (key: device id, or the site for incidents).")
	fs.StringVar(&c.RawAlertsTopic, "kafka.raw-alerts-topic", "", "Kafka topic for every device alert the detectors raise, before they are grouped into incidents, and the processors' device census (key: site; empty: the alerts topic's name and .raw, sensorflow.alerts.raw by default).")
	fs.StringVar(&c.DeadLetterTopic, "kafka.deadletter-topic", "sensorflow.deadletter", "Kafka topic for rejected payloads, with the reason in headers.")
	fs.StringVar(&c.StateTopic, "kafka.state-topic", "", "Compacted Kafka topic where processors checkpoint the detector state of each device (key: device id; as many partitions as the readings topic; empty: the readings topic's name with .detector-state for .readings, sensorflow.detector-state by default).")
	fs.IntVar(&c.Partitions, "kafka.partitions", 6, "Partitions of each topic Sensorflow creates.")
	fs.IntVar(&c.ReplicationFactor, "kafka.replication-factor", 1, "Replication factor of each topic Sensorflow creates.")
	fs.BoolVar(&c.CreateTopics, "kafka.create-topics", true, "Create missing topics at start-up.")
	fs.DurationVar(&c.SessionTimeout, "kafka.session-timeout", 10*time.Second, "Consumer group session timeout: how soon the partitions of a crashed consumer move to the others (brokers accept 6s to 30m by default).")
	fs.StringVar(&c.SASLMechanism, "kafka.sasl.mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none).")
	fs.StringVar(&c.SASLUsername, "kafka.sasl.username", "", "SASL username.")
	fs.StringVar(&c.SASLPassword, "kafka.sasl.password", "", "SASL password; prefer SENSORFLOW_KAFKA_SASL_PASSWORD or -kafka.sasl.password-file.")
	fs.StringVar(&c.SASLPasswordFile, "kafka.sasl.password-file", "", "File holding the SASL password.")
	c.TLS.RegisterFlags(fs, "kafka")
}

// BrokerList returns the bootstrap brokers.
func (c *Config) BrokerList() []string {
	var out []string
	for _, b := range strings.Split(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Validate checks the settings without connecting.
func (c *Config) Validate() error {
	if len(c.BrokerList()) == 0 {
		return errors.New("kafka.brokers is empty")
	}
	for _, t := range []string{c.ReadingsTopic, c.AlertsTopic, c.DeadLetterTopic} {
		if t == "" {
			return errors.New("kafka topic names must not be empty")
		}
	}
	if c.Partitions < 1 || c.ReplicationFactor < 1 {
		return errors.New("kafka.partitions and kafka.replication-factor must be at least 1")
	}
	if c.SessionTimeout < time.Second {
		return errors.New("kafka.session-timeout must be at least 1s")
	}
	_, err := c.mechanism()
	return err
}

func (c *Config) mechanism() (sasl.Mechanism, error) {
	if c.SASLMechanism == "" {
		return nil, nil
	}
	pw := c.SASLPassword
	if c.SASLPasswordFile != "" {
		b, err := os.ReadFile(c.SASLPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reading kafka.sasl.password-file: %w", err)
		}
		pw = strings.TrimSpace(string(b))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "PLAIN":
		return plain.Mechanism{Username: c.SASLUsername, Password: pw}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, c.SASLUsername, pw)
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, c.SASLUsername, pw)
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
}

// Transport returns the transport for writers and admin clients.
func (c *Config) Transport() (*kafka.Transport, error) {
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("kafka tls: %w", err)
	}
	return &kafka.Transport{SASL: mech, TLS: tc, DialTimeout: 5 * time.Second, MetadataTTL: 30 * time.Second}, nil
}

// Dialer returns the dialer for readers.
func (c *Config) Dialer() (*kafka.Dialer, error) {
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("kafka tls: %w", err)
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, SASLMechanism: mech, TLS: tc}, nil
}

// Client returns an admin client.
func (c *Config) Client() (*kafka.Client, error) {
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(c.BrokerList()...), Transport: tr, Timeout: 10 * time.Second}, nil
}

// Writer returns a writer with Sensorflow's guarantees: every write waits for
// all in-sync replicas (acks=all), messages are partitioned by key with the
// Java client's murmur2 so each device stays in order, and batches flush
// after at most linger instead of kafka-go's 1 s default. With linger 0 a
// write goes out as soon as its messages are in: the caller batches (see
// internal/batch), so a synchronous WriteMessages never waits for a batch to
// fill. batchSize is the most messages the caller passes to one
// WriteMessages. Messages must name their topic. The caller closes the writer.
// MaxBatchBytes bounds the messages of one partition in one produce
// request. Kafka refuses a record batch larger than the topic's
// max.message.bytes (1 MB by default: "Message Size Too Large" for every
// message of it, kafka-go#720), so a batch stays well under that whatever
// the messages' sizes; one message up to this size still goes alone.
const MaxBatchBytes = 512 << 10

func (c *Config) Writer(batchSize int, linger time.Duration) (*kafka.Writer, error) {
	if linger <= 0 {
		// kafka-go reads 0 as its 1 s default; a nanosecond flushes each
		// partition's batch right after the call added its messages.
		linger = time.Nanosecond
	}
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	// kafka-go's BatchSize is per partition, and it allocates that many
	// messages for every partition batch it starts. A call of batchSize
	// messages spreads over the topic's partitions: twice the even share
	// holds a partition's part of it, and a larger part goes out in a
	// second request, in order.
	perPartition := batchSize
	if c.Partitions > 1 {
		perPartition = min(batchSize, max(64, 2*((batchSize+c.Partitions-1)/c.Partitions)))
	}
	return &kafka.Writer{
		Addr:                   kafka.TCP(c.BrokerList()...),
		Balancer:               kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              perPartition,
		BatchBytes:             MaxBatchBytes,
		BatchTimeout:           linger,
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Transport:              tr,
	}, nil
}

func (c *Config) names() []string {
	return []string{c.ReadingsTopic, c.AlertsTopic, c.RawAlerts(), c.DeadLetterTopic, c.State()}
}

// State is the detector state topic: StateTopic, or by default the
// readings topic's name with ".detector-state" in place of ".readings"
// (or added).
func (c *Config) State() string {
	if c.StateTopic != "" {
		return c.StateTopic
	}
	return strings.TrimSuffix(c.ReadingsTopic, ".readings") + ".detector-state"
}

// RawAlerts is the raw alerts topic: RawAlertsTopic, or by default the
// alerts topic's name and ".raw".
func (c *Config) RawAlerts() string {
	if c.RawAlertsTopic != "" {
		return c.RawAlertsTopic
	}
	return c.AlertsTopic + ".raw"
}

// Topics returns the configurations of the topics Sensorflow uses.
func (c *Config) Topics() []kafka.TopicConfig {
	var out []kafka.TopicConfig
	for _, t := range c.names() {
		tc := kafka.TopicConfig{Topic: t, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor}
		if t == c.State() {
			// Only each device's latest state matters: compacted, with
			// segments rolled hourly so compaction can reach them.
			tc.ConfigEntries = []kafka.ConfigEntry{
				{ConfigName: "cleanup.policy", ConfigValue: "compact"},
				{ConfigName: "segment.ms", ConfigValue: "3600000"},
				{ConfigName: "min.cleanable.dirty.ratio", ConfigValue: "0.2"},
			}
		}
		out = append(out, tc)
	}
	return out
}

// EnsureTopics creates the topics Sensorflow uses when they are missing
// (and CreateTopics is on). Existing topics are left as they are.
func (c *Config) EnsureTopics(ctx context.Context) error {
	if !c.CreateTopics {
		return nil
	}
	cl, err := c.Client()
	if err != nil {
		return err
	}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: c.Topics()})
	if err != nil {
		return fmt.Errorf("creating kafka topics: %w", err)
	}
	for topic, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("creating kafka topic %s: %w", topic, terr)
		}
	}
	// A new topic's partitions take a moment to get leaders; writing before
	// that fails part of a batch.
	names := c.names()
	for {
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil && allLed(md, len(names)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for partition leaders of the kafka topics: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AwaitTopics asks Kafka for its metadata and runs EnsureTopics until both
// succeed, retrying with backoff while Kafka is unreachable (each attempt
// bounded to 15 s). It returns nil once the topics are there, ctx's error,
// or at once an error naming the brokers and the cause when Kafka refuses
// the credentials or one side does not trust the other's certificate
// (retry.Fatal): asking for metadata first surfaces that cause, which
// kafka-go's CreateTopics reports only as "Broker Not Available".
func (c *Config) AwaitTopics(ctx context.Context, log *slog.Logger) error {
	return retry.Forever(ctx, log, "creating kafka topics", func() error {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		cl, err := c.Client()
		if err != nil {
			return retry.Permanent(err)
		}
		if _, err := cl.Metadata(actx, &kafka.MetadataRequest{}); err != nil {
			return fmt.Errorf("kafka %s: %w", c.Brokers, err)
		}
		return c.EnsureTopics(actx)
	})
}

func allLed(md *kafka.MetadataResponse, topics int) bool {
	if len(md.Topics) != topics {
		return false
	}
	for _, t := range md.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return false
			}
		}
	}
	return true
}

// Fetch returns the reader's next message. A Kafka outage does not end it:
// kafka-go's reader reports a failed connection or group join as an error
// and keeps trying, so Fetch logs the failure (onErr, may be nil, sees it)
// and asks again, with backoff, until a message arrives or ctx ends.
func Fetch(ctx context.Context, r *kafka.Reader, log *slog.Logger, what string, onErr func(error)) (kafka.Message, error) {
	var m kafka.Message
	err := retry.Default.Forever(ctx, log, what, func() error {
		var err error
		m, err = r.FetchMessage(ctx)
		return err
	}, onErr)
	return m, err
}

// WriteAll writes msgs and retries, with backoff, only the messages Kafka did
// not acknowledge (kafka-go reports errors per message), so a partial
// failure such as a leader election adds no duplicates. It returns once all
// are written, or with ctx's error. onErr (may be nil) sees each failure.
func WriteAll(ctx context.Context, w *kafka.Writer, msgs []kafka.Message, log *slog.Logger, what string, onErr func(error)) error {
	pending := msgs
	return retry.Default.Forever(ctx, log, what, func() error {
		err := w.WriteMessages(ctx, pending...)
		var we kafka.WriteErrors
		if errors.As(err, &we) && len(we) == len(pending) {
			failed := make([]kafka.Message, 0, we.Count())
			for i, e := range we {
				if e != nil {
					failed = append(failed, pending[i])
				}
			}
			pending = failed
		}
		return err
	}, onErr)
}

// Warm opens w's connections: the cluster's metadata and a connection to
// the leader of every partition of topics, so that the first write does
// not pay for them (the first alert after a start is as quick as the
// next). Best effort, in the background: on an error the first write
// connects by itself, as it would have.
func Warm(ctx context.Context, w *kafka.Writer, log *slog.Logger, topics ...string) {
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cl := &kafka.Client{Addr: w.Addr, Transport: w.Transport}
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err != nil {
			log.Debug("kafka writer not warmed", "topics", topics, "err", err)
			return
		}
		req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
		for _, t := range md.Topics {
			for _, p := range t.Partitions {
				req.Topics[t.Name] = append(req.Topics[t.Name], kafka.LastOffsetOf(p.ID))
			}
		}
		if len(req.Topics) > 0 {
			if _, err := cl.ListOffsets(ctx, req); err != nil {
				log.Debug("kafka writer not warmed", "topics", topics, "err", err)
			}
		}
	}()
}
