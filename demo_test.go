package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/gorilla/websocket"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/dashboard"
	"github.com/sensorflow/sensorflow/internal/testenv"
	"github.com/sensorflow/sensorflow/processor/sink"
)

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func getJSON(t *testing.T, url string, v any) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	return json.NewDecoder(resp.Body).Decode(v) == nil
}

// The demo needs nothing installed: on free ports it stores readings and
// raises alerts within 30 s, serves the dashboard, stops cleanly, and keeps
// its history for the next start.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo for about 30 s")
	}
	data := t.TempDir()
	dash := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var c DemoConfig
	fs := newFlagSet("demo", "", io.Discard)
	c.RegisterFlags(fs)
	require.NoError(t, parse(fs, []string{
		"-demo.data", data, "-demo.mqtt-listen", "127.0.0.1:" + strconv.Itoa(freePort(t)),
		"-demo.kafka-port", strconv.Itoa(freePort(t)), "-dashboard.addr", dash,
		"-admin.addr", "127.0.0.1:0", "-simulator.devices", "50",
	}))
	var broker atomic.Pointer[mochi.Server]
	c.onBroker = func(s *mochi.Server) { broker.Store(s) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Demo(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	base := "http://" + dash
	var fleet dashboard.Fleet
	require.Eventually(t, func() bool {
		return getJSON(t, base+"/api/fleet", &fleet) && fleet.Readings > 0 && fleet.AlertsTotal > 0 && fleet.Devices == 50
	}, 30*time.Second, 250*time.Millisecond, "within 30 s: stored readings of every device and at least one alert (last seen: %+v)", &fleet)
	require.Equal(t, 50, fleet.Devices)
	var dev dashboard.DeviceView
	require.True(t, getJSON(t, base+"/api/device?id=dev-00001", &dev))
	require.NotEmpty(t, dev.Series["temperature"])
	page, err := http.Get(base + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	require.Contains(t, string(body), "<title>Sensorflow</title>")

	if _, err := exec.LookPath("chromium"); err == nil {
		browserCheck(t, base)
	} else if os.Getenv("SENSORFLOW_REQUIRE_SERVICES") == "1" {
		t.Fatal("chromium is missing: run `make browser`")
	} else {
		t.Log("chromium not installed: browser check skipped (make browser)")
	}

	cancel()
	stopped = true
	require.NoError(t, <-done, "a clean stop")
	require.NotNil(t, broker.Load())
	require.Zero(t, broker.Load().Info.InflightDropped, "the embedded broker dropped messages")

	// History survives: the store holds what the dashboard showed.
	store, err := sink.OpenBolt(filepath.Join(data, "store.db"), time.Hour)
	require.NoError(t, err)
	defer store.Close()
	n := 0
	require.NoError(t, store.Replay(time.Now().Add(-time.Hour), func(b sink.Batch) error { n += len(b.Readings); return nil }))
	require.GreaterOrEqual(t, int64(n), fleet.Readings)
	alerts, err := store.Alerts()
	require.NoError(t, err)
	require.NotEmpty(t, alerts)
}

// browserCheck opens the dashboard in headless Chromium, driven over the
// DevTools protocol: the fleet view and a device page render charts with
// data, and the alert feed receives live events. Screenshots are saved in
// out/ as test artifacts.
func browserCheck(t *testing.T, base string) {
	require.NoError(t, os.MkdirAll("out", 0o755))
	var top dashboard.Fleet
	require.True(t, getJSON(t, base+"/api/fleet?n=1", &top))
	require.NotEmpty(t, top.Top)
	device := top.Top[0].DeviceID

	b := startBrowser(t)
	b.navigate(base + "/")
	b.waitFor(`Number(document.querySelector("#c-devices").textContent) > 0 && document.querySelectorAll("#devices tbody tr").length > 0`)
	// The feed counts events that arrived over SSE after the page loaded.
	b.waitFor(`Number(document.body.dataset.sseEvents) > 0 && document.querySelectorAll("#alerts li.alert").length > 0`)
	b.screenshot("out/dashboard-fleet.png")

	b.navigate(base + "/#/device/" + device)
	b.waitFor(`document.querySelectorAll(".chart").length > 0 && [...document.querySelectorAll(".chart")].every(c => Number(c.dataset.points) > 1)`)
	charts := b.eval(`document.querySelectorAll(".chart").length`)
	b.screenshot("out/dashboard-device.png")
	t.Logf("browser: fleet view and %v charts of %s rendered with data; live alert events arrived over SSE; screenshots in out/", charts, device)
	for _, f := range []string{"out/dashboard-device.png", "out/dashboard-fleet.png"} {
		st, err := os.Stat(f)
		require.NoError(t, err)
		require.Greater(t, st.Size(), int64(10000), f)
	}
}

// browser is a headless Chromium page driven over the DevTools protocol.
type browser struct {
	t    *testing.T
	conn *websocket.Conn
	id   int
}

func startBrowser(t *testing.T) *browser {
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser exits, which would fail the
	// test's cleanup; remove it with retries instead.
	profile, err := os.MkdirTemp("", "sensorflow-chromium-")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--remote-debugging-port=0",
		"--user-data-dir="+profile, "--window-size=1400,1000", "about:blank")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind", profile)
	})
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := regexp.MustCompile(`DevTools listening on (ws://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				endpoint <- m[1]
			}
		}
	}()
	var ws string
	select {
	case ws = <-endpoint:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not start")
	}
	u, err := url.Parse(ws)
	require.NoError(t, err)
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	require.Eventually(t, func() bool { return getJSON(t, "http://"+u.Host+"/json/list", &targets) && len(targets) > 0 }, 10*time.Second, 100*time.Millisecond)
	page := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			page = tg.WS
		}
	}
	require.NotEmpty(t, page)
	conn, _, err := websocket.DefaultDialer.Dial(page, nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &browser{t: t, conn: conn}
}

// call sends a DevTools command and returns its result.
func (b *browser) call(method string, params map[string]any) map[string]any {
	b.id++
	require.NoError(b.t, b.conn.WriteJSON(map[string]any{"id": b.id, "method": method, "params": params}))
	_ = b.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result map[string]any  `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		require.NoError(b.t, b.conn.ReadJSON(&msg))
		if msg.ID != b.id {
			continue // an event
		}
		require.Empty(b.t, msg.Error, method)
		return msg.Result
	}
}

func (b *browser) navigate(u string) { b.call("Page.navigate", map[string]any{"url": u}) }

func (b *browser) eval(expr string) any {
	r := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	res, _ := r["result"].(map[string]any)
	return res["value"]
}

func (b *browser) waitFor(expr string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if v, ok := b.eval("(() => { try { return " + expr + " } catch (e) { return false } })()").(bool); ok && v {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.t.Fatalf("the page never satisfied: %s", expr)
}

func (b *browser) screenshot(path string) {
	r := b.call("Page.captureScreenshot", map[string]any{"format": "png"})
	png, err := base64.StdEncoding.DecodeString(r["data"].(string))
	require.NoError(b.t, err)
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
}

// Every embedded piece gives way to a real server through the usual flags.
func TestDemoWithRealServers(t *testing.T) {
	mqttURL, brokers := testenv.MQTT(t), testenv.Kafka(t)
	influxURL, token, bucket := testenv.Influx(t)
	hosts := testenv.Cassandra(t)
	id := testenv.Unique("demo")
	var c DemoConfig
	fs := newFlagSet("demo", "", io.Discard)
	c.RegisterFlags(fs)
	require.NoError(t, parse(fs, []string{
		"-demo.data", t.TempDir(), "-dashboard.addr", "127.0.0.1:0", "-admin.addr", "127.0.0.1:0",
		"-mqtt.url", mqttURL, "-mqtt.topic-prefix", id, "-kafka.brokers", brokers,
		"-kafka.readings-topic", id + ".readings", "-kafka.alerts-topic", id + ".alerts", "-kafka.deadletter-topic", id + ".deadletter",
		"-bridge.client-id", id + "-bridge", "-bridge.share-group", id, "-bridge.alerts-group", id + "-alerts", "-processor.group", id,
		"-influx.url", influxURL, "-influx.token", token, "-influx.bucket", bucket,
		"-cassandra.hosts", hosts, "-cassandra.keyspace", id,
		"-simulator.devices", "10", "-simulator.device-prefix", id + "-", "-simulator.client-prefix", id,
	}))
	var embedded atomic.Bool
	c.onBroker = func(*mochi.Server) { embedded.Store(true) }
	var banner bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Demo(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), &banner) }()
	t.Cleanup(func() {
		cl := &kafka.Client{Addr: kafka.TCP(brokers)}
		_, _ = cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{id + ".readings", id + ".alerts", id + ".alerts.raw", id + ".deadletter"}})
		if cc := gocql.NewCluster(strings.Split(hosts, ",")...); cc != nil {
			if s, err := cc.CreateSession(); err == nil {
				_ = s.Query("DROP KEYSPACE IF EXISTS " + id).Exec()
				s.Close()
			}
		}
	})

	ic := influxdb2.NewClient(influxURL, token)
	defer ic.Close()
	require.Eventually(t, func() bool {
		res, err := ic.QueryAPI("sensorflow").Query(context.Background(), fmt.Sprintf(`import "strings"
from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r._measurement == "readings" and strings.hasPrefix(v: r.device_id, prefix: %q)) |> group() |> count()`, bucket, id+"-"))
		if err != nil {
			return false
		}
		defer res.Close()
		return res.Next() && res.Record().Value().(int64) > 100
	}, time.Minute, 500*time.Millisecond, "readings of the demo in the real InfluxDB")
	cancel()
	require.NoError(t, <-done)
	require.False(t, embedded.Load(), "no embedded broker when -mqtt.url is given")
	out := banner.String()
	require.Contains(t, out, mqttURL+" (external)")
	require.Contains(t, out, brokers+" (external)")
	require.Contains(t, out, "InfluxDB")
	require.Contains(t, out, "Cassandra")
}
