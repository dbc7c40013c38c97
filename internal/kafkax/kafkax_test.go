package kafkax_test

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/sensor"
	"github.com/sensorflow/sensorflow/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func defaults(t *testing.T) kafkax.Config {
	var c kafkax.Config
	fs := flag.NewFlagSet("", flag.PanicOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	return c
}

func TestDeadLetter(t *testing.T) {
	received := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	rej := &sensor.Rejection{Reason: sensor.ReasonWrongType, Detail: "metrics.t: want a number"}
	tests := []struct {
		name          string
		payload       []byte
		source        string
		wantTruncated bool
	}{
		{name: "small payload kept whole", payload: []byte(`{"metrics":{"t":"x"}}`), source: "sensorflow/s/d/telemetry"},
		{name: "huge payload cut", payload: []byte(strings.Repeat("x", kafkax.MaxDeadLetterPayload+1)), source: "t", wantTruncated: true},
		{name: "hostile topic cut", payload: []byte("{}"), source: strings.Repeat("a/", 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := kafkax.DeadLetter("dl", []byte("dev-1"), tt.source, tt.payload, rej, received)
			require.Equal(t, "dl", m.Topic)
			require.Equal(t, "dev-1", string(m.Key))
			h := kafkax.HeaderMap(m)
			require.Equal(t, rej.Reason, h[kafkax.HeaderReason])
			require.Equal(t, rej.Detail, h[kafkax.HeaderDetail])
			require.Equal(t, "2026-01-02T02:04:05.000000006Z", h[kafkax.HeaderReceivedAt])
			require.Equal(t, len(tt.payload), mustAtoi(t, h[kafkax.HeaderOriginalSize]))
			require.LessOrEqual(t, len(h[kafkax.HeaderSourceTopic]), 1024)
			require.True(t, strings.HasPrefix(tt.source, h[kafkax.HeaderSourceTopic]))
			if tt.wantTruncated {
				require.Equal(t, "true", h[kafkax.HeaderTruncated])
				require.Len(t, m.Value, kafkax.MaxDeadLetterPayload)
			} else {
				require.NotContains(t, h, kafkax.HeaderTruncated)
				require.Equal(t, tt.payload, m.Value)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9', s)
		n = n*10 + int(c-'0')
	}
	return n
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *kafkax.Config)
		wantErr string
	}{
		{name: "defaults", edit: func(*kafkax.Config) {}},
		{name: "no broker", edit: func(c *kafkax.Config) { c.Brokers = " , " }, wantErr: "kafka.brokers is empty"},
		{name: "empty topic", edit: func(c *kafkax.Config) { c.AlertsTopic = "" }, wantErr: "topic names must not be empty"},
		{name: "no partitions", edit: func(c *kafkax.Config) { c.Partitions = 0 }, wantErr: "at least 1"},
		{name: "short session", edit: func(c *kafkax.Config) { c.SessionTimeout = time.Millisecond }, wantErr: "session-timeout"},
		{name: "unknown SASL", edit: func(c *kafkax.Config) { c.SASLMechanism = "GSSAPI" }, wantErr: "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{name: "missing password file", edit: func(c *kafkax.Config) { c.SASLMechanism, c.SASLPasswordFile = "PLAIN", "/nonexistent" }, wantErr: "kafka.sasl.password-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults(t)
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// The writer carries the delivery guarantees: acks=all and the Java
// client's partitioner, so a device's readings stay on one partition.
func TestWriterGuarantees(t *testing.T) {
	c := defaults(t)
	w, err := c.Writer(100, 5*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, kafka.RequireAll, w.RequiredAcks)
	require.IsType(t, kafka.Murmur2Balancer{}, w.Balancer)
	require.Equal(t, 5*time.Millisecond, w.BatchTimeout)
	require.False(t, w.AllowAutoTopicCreation)
	require.EqualValues(t, kafkax.MaxBatchBytes, w.BatchBytes)
}

// Large messages in a large call still go through a real broker: the
// writer splits them into record batches under its default limit of 1 MB,
// which refuses a larger batch whole (with BatchBytes at 16 MiB this write
// failed: 400 of 400 "Message Size Too Large").
func TestWriterSplitsLargeBatchesOnARealBroker(t *testing.T) {
	c := defaults(t)
	c.Brokers, c.Partitions = testenv.Kafka(t), 1
	id := testenv.Unique("kx-large")
	c.ReadingsTopic, c.AlertsTopic, c.DeadLetterTopic = id+".readings", id+".alerts", id+".deadletter"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.EnsureTopics(ctx))
	cl, err := c.Client()
	require.NoError(t, err)
	defer cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{c.ReadingsTopic, c.AlertsTopic, c.RawAlerts(), c.DeadLetterTopic, c.State()}}) //nolint:errcheck
	w, err := c.Writer(1000, 0)
	require.NoError(t, err)
	defer w.Close()
	w.MaxAttempts = 1
	// A topic just made may not have its leader yet (Not Leader For
	// Partition): wait until a small write goes through, so the one
	// attempt below fails only for the batch's size.
	require.Eventually(t, func() bool {
		return w.WriteMessages(ctx, kafka.Message{Topic: c.ReadingsTopic, Key: []byte("dev-1"), Value: []byte("probe")}) == nil
	}, 30*time.Second, 100*time.Millisecond, "the new topic accepts a write")
	msgs := make([]kafka.Message, 400) // 2 MB for one partition
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: c.ReadingsTopic, Key: []byte("dev-1"), Value: make([]byte, 5000)}
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))
}

// embeddedTopics starts the embedded broker and creates a config's three
// topics there, with three partitions each.
func embeddedTopics(t *testing.T) (*kfake.Cluster, string, kafkax.Config) {
	cluster, brokers := testenv.EmbeddedKafka(t)
	c := defaults(t)
	id := testenv.Unique("kx")
	c.Brokers, c.Partitions = brokers, 3
	c.ReadingsTopic, c.AlertsTopic, c.DeadLetterTopic = id+".r", id+".a", id+".d"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.AwaitTopics(ctx, quiet))
	return cluster, brokers, c
}

// AwaitTopics creates the three topics with their partitions and is
// idempotent; WriteAll rewrites only what Kafka refused.
func TestAwaitTopicsAndWriteAll(t *testing.T) {
	cluster, brokers, c := embeddedTopics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.AwaitTopics(ctx, quiet), "existing topics are fine")
	cl, err := c.Client()
	require.NoError(t, err)
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.ReadingsTopic, c.AlertsTopic, c.DeadLetterTopic}})
	require.NoError(t, err)
	require.Len(t, md.Topics, 3)
	for _, tp := range md.Topics {
		require.NoError(t, tp.Error)
		require.Len(t, tp.Partitions, 3, tp.Name)
	}

	// The first produce request is refused for one partition only.
	var produces atomic.Int64
	testenv.RefuseProduce(cluster, func() bool { return produces.Add(1) == 1 }, nil)
	w, err := c.Writer(100, time.Millisecond)
	require.NoError(t, err)
	w.MaxAttempts = 1 // let WriteAll do the retrying
	defer w.Close()
	var msgs []kafka.Message
	for i := range 30 {
		msgs = append(msgs, kafka.Message{Topic: c.ReadingsTopic, Key: []byte{byte('a' + i%10)}, Value: []byte{byte(i)}})
	}
	failures := 0
	require.NoError(t, kafkax.WriteAll(ctx, w, msgs, quiet, "writing", func(error) { failures++ }))
	require.Equal(t, 1, failures)
	total := 0
	for p := range 3 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokers}, Topic: c.ReadingsTopic, Partition: p, MaxWait: 50 * time.Millisecond})
		last, err := r.ReadLag(ctx)
		require.NoError(t, err)
		total += int(last)
		r.Close()
	}
	require.Equal(t, 30, total, "every message once: the refused part rewritten, the rest not")
}

// Warm asks the leaders of every partition of the writer's topics for
// their offsets: the connections the first write needs are open before it.
func TestWarmConnectsToEveryPartitionLeader(t *testing.T) {
	cluster, _, c := embeddedTopics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	asked := map[int32]bool{}
	cluster.ControlKey(kmsg.ListOffsets.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.(*kmsg.ListOffsetsRequest).Topics {
			if tp.Topic == c.AlertsTopic {
				for _, p := range tp.Partitions {
					asked[p.Partition] = true
				}
			}
		}
		return nil, nil, false // observe only
	})
	w, err := c.Writer(100, 0)
	require.NoError(t, err)
	defer w.Close()
	kafkax.Warm(ctx, w, quiet, c.AlertsTopic)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(asked) == 3
	}, 20*time.Second, 10*time.Millisecond, "every partition's leader asked")
}
