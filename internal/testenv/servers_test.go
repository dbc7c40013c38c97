package testenv_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gocql/gocql"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/testenv"
)

// persistentSubscriber connects a CleanSession=false client subscribed to
// topic with QoS 1 and returns once the broker confirmed the subscription.
// handle also serves as default handler: a resumed session delivers before
// SUBACK, and paho would otherwise acknowledge and drop those messages.
func persistentSubscriber(t *testing.T, url, id, topic string, handle mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	subscribed := make(chan error, 1)
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false).
		SetDefaultPublishHandler(handle).
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.Subscribe(topic, 1, handle)
			go func() { tok.Wait(); subscribed <- tok.Error() }()
		})
	c := mqtt.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	select {
	case err := <-subscribed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no SUBACK")
	}
	return c
}

// dropSession removes a persistent session from the broker.
func dropSession(url, id string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true))
	if tok := c.Connect(); tok.WaitTimeout(5 * time.Second) {
		c.Disconnect(100)
	}
}

// A persistent QoS 1 session receives what was published while it was away.
func TestMosquittoPersistentSession(t *testing.T) {
	url := testenv.MQTT(t)
	id := testenv.Unique("sf-test-sub-")
	topic := "sensorflow-test/" + id
	got := make(chan string, 100)
	handle := func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }
	connect := func() mqtt.Client { return persistentSubscriber(t, url, id, topic, handle) }
	sub := connect()
	// Make sure the subscription is in place before going away.
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id + "-pub"))
	tok := pub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer pub.Disconnect(100)
	ptok := pub.Publish(topic, 1, false, "before")
	require.True(t, ptok.WaitTimeout(10*time.Second))
	select {
	case m := <-got:
		require.Equal(t, "before", m)
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber got nothing while connected")
	}
	sub.Disconnect(100)

	for i := range 20 {
		ptok := pub.Publish(topic, 1, false, fmt.Sprintf("offline-%d", i))
		require.True(t, ptok.WaitTimeout(10*time.Second))
		require.NoError(t, ptok.Error())
	}
	sub = connect()
	defer sub.Disconnect(100)
	var received []string
	for len(received) < 20 {
		select {
		case m := <-got:
			if m == "before" {
				continue // QoS 1 is at least once: its PUBACK may not have left before the disconnect
			}
			received = append(received, m)
		case <-time.After(15 * time.Second):
			t.Fatalf("after reconnecting got %d of 20 queued messages: %v", len(received), received)
		}
	}
	require.Equal(t, "offline-0", received[0])
	require.Equal(t, "offline-19", received[19])

	dropSession(url, id) // so the broker does not keep it
}

// Mosquitto as configured by deploy/mosquitto keeps far more than its
// default 1,000 queued QoS 1 messages for a subscriber that is away, so a
// bridge that stalls on Kafka loses nothing.
func TestMosquittoQueuesBeyondDefaultLimit(t *testing.T) {
	url := testenv.MQTT(t)
	id := testenv.Unique("sf-test-slow-")
	topic := "sensorflow-test/" + id + "/#"
	var mu sync.Mutex
	got := map[string]bool{}
	handle := func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got[string(m.Payload())] = true
		mu.Unlock()
	}
	connect := func() mqtt.Client { return persistentSubscriber(t, url, id, topic, handle) }
	sub := connect()
	sub.Disconnect(100)

	const publishers, each = 4, 5000
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("%s-pub%d", id, p)))
			tok := c.Connect()
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Errorf("publisher %d: %v", p, tok.Error())
				return
			}
			defer c.Disconnect(100)
			toks := make([]mqtt.Token, 0, each)
			for i := range each {
				toks = append(toks, c.Publish(fmt.Sprintf("sensorflow-test/%s/%d", id, p), 1, false, fmt.Sprintf("%d-%d", p, i)))
			}
			for _, tk := range toks {
				if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
					t.Errorf("publish not acknowledged: %v", tk.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	sub = connect()
	defer func() {
		sub.Disconnect(100)
		dropSession(url, id)
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	deadline := time.Now().Add(time.Minute)
	for count() < publishers*each && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, publishers*each, count(), "the returning subscriber must get every queued message")
}

// Produce with acks=all, consume in a group, commit, restart the reader and
// read on from the committed offset.
func TestKafkaProduceConsumeCommit(t *testing.T) {
	brokers := strings.Split(testenv.Kafka(t), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := testenv.Unique("sf-test-")
	cl := &kafka.Client{Addr: kafka.TCP(brokers...)}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	require.NoError(t, err)
	require.NoError(t, resp.Errors[topic])
	defer cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}}) //nolint:errcheck

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	msgs := make([]kafka.Message, 100)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("k"), Value: []byte(fmt.Sprint(i))}
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))
	require.NoError(t, w.Close())

	group := topic + "-group"
	read := func(n int) []kafka.Message {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: 200 * time.Millisecond})
		defer r.Close()
		var out []kafka.Message
		for len(out) < n {
			m, err := r.FetchMessage(ctx)
			require.NoError(t, err)
			out = append(out, m)
		}
		require.NoError(t, r.CommitMessages(ctx, out...))
		return out
	}
	first := read(50)
	require.Equal(t, "0", string(first[0].Value))
	second := read(50)
	require.Equal(t, int64(50), second[0].Offset, "a restarted reader resumes at the committed offset")
	require.Equal(t, "99", string(second[49].Value))
}

// Keyspace and table creation, a prepared insert and a select.
func TestCassandraPreparedInsertSelect(t *testing.T) {
	hosts := strings.Split(testenv.Cassandra(t), ",")
	ks := testenv.Unique("sf_test_")
	cl := gocql.NewCluster(hosts...)
	cl.Timeout = 20 * time.Second
	sess, err := cl.CreateSession()
	require.NoError(t, err)
	defer sess.Close()
	require.NoError(t, sess.Query(`CREATE KEYSPACE `+ks+` WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).Exec())
	defer sess.Query(`DROP KEYSPACE ` + ks).Exec() //nolint:errcheck
	require.NoError(t, sess.Query(`CREATE TABLE `+ks+`.t (id text PRIMARY KEY, v double)`).Exec())
	for i := range 10 {
		require.NoError(t, sess.Query(`INSERT INTO `+ks+`.t (id, v) VALUES (?, ?)`, fmt.Sprint("k", i), float64(i)/2).Idempotent(true).Exec())
	}
	var v float64
	require.NoError(t, sess.Query(`SELECT v FROM `+ks+`.t WHERE id = ?`, "k7").Scan(&v))
	require.Equal(t, 3.5, v)
	var n int
	require.NoError(t, sess.Query(`SELECT count(*) FROM `+ks+`.t`).Scan(&n))
	require.Equal(t, 10, n)
}

// A v2-API write and a Flux query.
func TestInfluxWriteAndFluxQuery(t *testing.T) {
	url, token, bucket := testenv.Influx(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := influxdb2.NewClient(url, token)
	defer cl.Close()
	meas := testenv.Unique("sf_test_")
	now := time.Now().Truncate(time.Second)
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf("%s,device_id=d%d v=%d %d", meas, i, i, now.Add(-time.Duration(i)*time.Second).UnixNano()))
	}
	require.NoError(t, cl.WriteAPIBlocking("sensorflow", bucket).WriteRecord(ctx, lines...))
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r._measurement == %q) |> group() |> sum()`, bucket, meas)
	res, err := cl.QueryAPI("sensorflow").Query(ctx, q)
	require.NoError(t, err)
	defer res.Close()
	require.True(t, res.Next(), "query returned no row: %v", res.Err())
	require.EqualValues(t, 0+1+2+3+4, res.Record().Value())
}
