package mqttx_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/testenv"
)

// Acknowledgements written straight to the connection are the broker's
// PUBACKs: a persistent session that acknowledged a run of messages does
// not get them again when it comes back, and gets again exactly the ones
// it did not acknowledge. On the embedded broker and on Mosquitto.
func TestAcksReachTheBroker(t *testing.T) {
	for _, b := range []struct {
		name string
		url  func(testing.TB) string
	}{
		{"embedded", func(t testing.TB) string { _, u := testenv.EmbeddedMQTT(t); return u }},
		{"mosquitto", testenv.MQTT},
	} {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			id := testenv.Unique("sf-acks-")
			topic := "sensorflow-test/" + id
			var mu sync.Mutex
			var got []mqtt.Message
			cfg := mqttx.Config{URL: url, KeepAlive: 30 * time.Second, ConnectWait: 10 * time.Second}
			connect := func() (mqtt.Client, *mqttx.Acks) {
				o, err := cfg.Options(id, false)
				require.NoError(t, err)
				o.SetAutoAckDisabled(true)
				acks := &mqttx.Acks{}
				acks.Attach(o)
				handle := func(_ mqtt.Client, m mqtt.Message) {
					mu.Lock()
					got = append(got, m)
					mu.Unlock()
				}
				o.SetDefaultPublishHandler(handle)
				subscribed := make(chan error, 1)
				o.SetOnConnectHandler(func(c mqtt.Client) {
					acks.Connected()
					tok := c.Subscribe(topic, 1, nil)
					go func() { tok.Wait(); subscribed <- tok.Error() }()
				})
				c := mqtt.NewClient(o)
				require.NoError(t, mqttx.Wait(c.Connect(), 10*time.Second))
				require.NoError(t, <-subscribed)
				return c, acks
			}
			received := func(n int) []mqtt.Message {
				require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= n }, 10*time.Second, 5*time.Millisecond)
				mu.Lock()
				defer mu.Unlock()
				out := got
				got = nil
				return out
			}

			sub, acks := connect()
			pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id + "-pub"))
			require.NoError(t, mqttx.Wait(pub.Connect(), 10*time.Second))
			defer pub.Disconnect(100)
			for i := range 30 {
				require.NoError(t, mqttx.Wait(pub.Publish(topic, 1, false, fmt.Sprint(i)), 10*time.Second))
			}
			msgs := received(30)
			require.True(t, acks.Direct(), "connected: acknowledgements go straight to the connection")
			acks.Ack(msgs[:20]) // the last ten stay unacknowledged
			time.Sleep(100 * time.Millisecond)
			sub.Disconnect(100)
			require.False(t, acks.Direct(), "a closed connection takes no acknowledgement: paho's are used until the next connect")

			sub, _ = connect()
			defer func() {
				sub.Disconnect(100)
				dropped := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true))
				if mqttx.Wait(dropped.Connect(), 5*time.Second) == nil {
					dropped.Disconnect(100)
				}
			}()
			again := received(10)
			time.Sleep(300 * time.Millisecond) // nothing more comes
			mu.Lock()
			again = append(again, got...)
			mu.Unlock()
			var payloads []string
			for _, m := range again {
				payloads = append(payloads, string(m.Payload()))
			}
			require.ElementsMatch(t, []string{"20", "21", "22", "23", "24", "25", "26", "27", "28", "29"}, payloads, "only the unacknowledged come again")
		})
	}
}
