package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/segmentio/kafka-go"

	"github.com/sensorflow/sensorflow/internal/kafkax"
	"github.com/sensorflow/sensorflow/internal/mqttx"
	"github.com/sensorflow/sensorflow/internal/sensor"
)

// AlertsConfig holds the flags of `sensorflow alerts`.
type AlertsConfig struct {
	MQTT        mqttx.Config
	Kafka       kafkax.Config
	TopicPrefix string
	Source      string
	JSON        bool
	FromStart   bool
	Device      string
	Count       int
}

// RegisterFlags registers the alerts flags.
func (c *AlertsConfig) RegisterFlags(fs *flag.FlagSet) {
	c.MQTT.RegisterFlags(fs)
	c.Kafka.RegisterFlags(fs)
	fs.StringVar(&c.TopicPrefix, "mqtt.topic-prefix", "sensorflow", "First level of every MQTT topic.")
	fs.StringVar(&c.Source, "source", "kafka", "Where to follow alerts: kafka (the alerts topic) or mqtt ({prefix}/+/+/alerts).")
	fs.BoolVar(&c.JSON, "json", false, "Print each alert as one JSON line instead of a readable line.")
	fs.BoolVar(&c.FromStart, "from-beginning", false, "Kafka: print the alerts already in the topic first.")
	fs.StringVar(&c.Device, "device", "", "Only alerts of this device id.")
	fs.IntVar(&c.Count, "n", 0, "Exit after this many alerts (0: follow until interrupted).")
}

// Alerts prints the alert stream until ctx ends or Count alerts were shown.
func Alerts(ctx context.Context, c AlertsConfig, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shown := 0
	show := func(raw []byte) {
		a, err := sensor.ParseAlert(raw)
		if err != nil {
			fmt.Fprintf(out, "unreadable alert: %s\n", strconv.QuoteToASCII(err.Error()))
			return
		}
		if c.Device != "" && a.DeviceID != c.Device {
			return
		}
		if c.JSON {
			fmt.Fprintf(out, "%s\n", raw)
		} else {
			fmt.Fprintln(out, FormatAlert(&a))
		}
		shown++
		if c.Count > 0 && shown >= c.Count {
			cancel()
		}
	}
	switch c.Source {
	case "kafka":
		return followKafka(ctx, c, show)
	case "mqtt":
		return followMQTT(ctx, c, show)
	}
	return fmt.Errorf("-source %q: want kafka or mqtt", c.Source)
}

// FormatAlert renders an alert as one readable line.
func FormatAlert(a *sensor.Alert) string {
	state := "OPEN    "
	if a.State == sensor.StateResolved {
		state = "RESOLVED"
	}
	// Kind and severity are free text from the alerts topic: printed
	// quoted when they hold anything but plain ASCII, so no control
	// character reaches the terminal.
	if a.DeviceID == sensor.SiteDevice { // an incident: what it groups
		members := strings.Join(a.Members[:min(len(a.Members), 5)], ",")
		if len(a.Members) > 5 || a.MemberCount > len(a.Members) {
			members += ",…"
		}
		grouped := ""
		if a.State == sensor.StateResolved {
			grouped = fmt.Sprintf(", %d device alerts grouped", a.Suppressed)
		}
		return fmt.Sprintf("%s %s %-8s %-8s %s %s: %d devices (%s)%s %s",
			a.TS.UTC().Format(time.RFC3339), state, printable(a.Severity), printable(a.Kind), a.Site, a.Metric, a.MemberCount, members, grouped, a.AlertID)
	}
	return fmt.Sprintf("%s %s %-8s %-8s %s/%s %s=%g expected [%.4g, %.4g] score %.2f %s",
		a.TS.UTC().Format(time.RFC3339), state, printable(a.Severity), printable(a.Kind), a.Site, a.DeviceID, a.Metric, a.Value,
		a.ExpectedLow, a.ExpectedHigh, a.Score, a.AlertID)
}

// printable returns s as it is if it is printable ASCII without spaces,
// else quoted with Go's escapes.
func printable(s string) string {
	if sensor.NotPlain(s) >= 0 {
		return strconv.QuoteToASCII(s)
	}
	return s
}

func followKafka(ctx context.Context, c AlertsConfig, show func([]byte)) error {
	dialer, err := c.Kafka.Dialer()
	if err != nil {
		return err
	}
	cl, err := c.Kafka.Client()
	if err != nil {
		return err
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.Kafka.AlertsTopic}})
	if err != nil {
		return fmt.Errorf("reading kafka metadata: %w", err)
	}
	if len(md.Topics) == 0 || md.Topics[0].Error != nil {
		return fmt.Errorf("kafka topic %s not found (start the processor first)", c.Kafka.AlertsTopic)
	}
	start := kafka.LastOffset
	if c.FromStart {
		start = kafka.FirstOffset
	}
	msgs := make(chan []byte)
	for _, p := range md.Topics[0].Partitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: c.Kafka.BrokerList(), Topic: c.Kafka.AlertsTopic, Partition: p.ID, Dialer: dialer,
			MaxWait: 500 * time.Millisecond,
		})
		if err := r.SetOffset(start); err != nil {
			return err
		}
		go func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				select {
				case msgs <- m.Value:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		select {
		case v := <-msgs:
			show(v)
		case <-ctx.Done():
			return nil
		}
	}
}

func followMQTT(ctx context.Context, c AlertsConfig, show func([]byte)) error {
	opts, err := c.MQTT.Options(fmt.Sprintf("sensorflow-alerts-%d", time.Now().UnixNano()), true)
	if err != nil {
		return err
	}
	msgs := make(chan []byte, 1024)
	filter := sensor.Topics{Prefix: c.TopicPrefix}.AlertsFilter()
	opts.SetOnConnectHandler(func(cl mqtt.Client) {
		cl.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case msgs <- m.Payload():
			case <-ctx.Done():
			}
		})
	})
	cl := mqtt.NewClient(opts)
	if err := mqttx.Wait(cl.Connect(), c.MQTT.ConnectWait); err != nil {
		return fmt.Errorf("connecting to %s: %w", c.MQTT.URL, err)
	}
	defer cl.Disconnect(250)
	for {
		select {
		case v := <-msgs:
			show(v)
		case <-ctx.Done():
			return nil
		}
	}
}
