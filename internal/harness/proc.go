// Package harness runs Sensorflow services as their own processes from the
// real binary and reads their CPU time, memory and metrics: the measuring
// side of make bench and make faults.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sensorflow/sensorflow/internal/testenv"
)

// Proc is one sensorflow service run as its own process from the real
// binary, so its CPU time and memory are its own.
type Proc struct {
	name  string
	cmd   *exec.Cmd
	admin string
	done  chan struct{} // closed when the process exited
	err   error         // its exit status, once done is closed
	log   string
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit status, once Done is closed.
func (p *Proc) Err() error { return p.err }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Admin is the address of the process's admin server (/metrics, /readyz).
func (p *Proc) Admin() string { return p.admin }

// Log is the path of the process's log file.
func (p *Proc) Log() string { return p.log }

// Start starts bin with args plus a free admin port, logging to
// out/logs/name.log, and waits until /readyz answers 200.
func Start(ctx context.Context, bin, logDir, name string, args ...string) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", port)
	args = append(args, "-admin.addr="+admin, "-log.format=text", "-dashboard.addr=", "-admin.pprof")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	lf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Keep the servers' addresses from the environment, drop the rest of
	// SENSORFLOW_* so flags alone configure the service.
	cmd.Env = os.Environ()
	if os.Getenv("SENSORFLOW_INFLUX_TOKEN") == "" {
		// The local stack's token, which the tests read from its folder.
		if tok := testenv.Get().InfluxToken; tok != "" {
			cmd.Env = append(cmd.Env, "SENSORFLOW_INFLUX_TOKEN="+tok)
		}
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, admin: admin, done: make(chan struct{}), log: lf.Name()}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready (%v); see %s", name, p.err, lf.Name())
		case <-ctx.Done():
			p.Kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("%s not ready within 90s; see %s", name, lf.Name())
		}
	}
}

func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Stop sends SIGTERM and waits for a graceful exit.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(60 * time.Second):
		p.Kill()
		return fmt.Errorf("%s did not stop within 60s of SIGTERM", p.name)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Metric sums the samples of a counter or gauge whose labels include want.
func (p *Proc) Metric(name string, want map[string]string) (float64, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	// Uncompressed: the measured process should not gzip its metrics for
	// every poll of the bench.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	fam, ok := fams[name]
	if !ok {
		return 0, nil
	}
	sum := 0.0
next:
	for _, m := range fam.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum, nil
}

// WaitMetric polls a metric until it reaches at least n and returns the time
// it was first seen there. Each poll makes the process render its whole
// metrics page, which costs it CPU that a measurement would count: so it
// polls about twice before the expected arrival (from the rate seen so
// far), between every 10 and 250 ms, rather than at a fixed rate.
func (p *Proc) WaitMetric(ctx context.Context, name string, labels map[string]string, n float64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var prev float64
	var prevAt time.Time
	for {
		v, err := p.Metric(name, labels)
		now := time.Now()
		if err == nil && v >= n {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("%s: %s reached %.0f of %.0f within %s", p.name, name, v, n, timeout)
		}
		wait := 25 * time.Millisecond
		if err == nil && !prevAt.IsZero() && v > prev {
			eta := time.Duration((n - v) / (v - prev) * float64(now.Sub(prevAt)))
			wait = min(max(eta/2, 10*time.Millisecond), 250*time.Millisecond)
		}
		if err == nil {
			prev, prevAt = v, now
		}
		select {
		case <-p.done:
			return time.Time{}, fmt.Errorf("%s exited: %v", p.name, p.err)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// CPU returns the user+system CPU time the process used so far.
func (p *Proc) CPU() (time.Duration, error) {
	return PidCPU(p.cmd.Process.Pid)
}

func PidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// Memory returns the current and peak resident set size in bytes.
func (p *Proc) Memory() (rss, peak int64, err error) {
	return PidMemory(p.cmd.Process.Pid)
}

func PidMemory(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// Profile records a CPU profile of the process for d into path, in the
// background; wait on the returned channel for it to be written.
func (p *Proc) Profile(d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, int(d.Seconds())))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			done <- err
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return done
}

// MachineCPU returns the machine's busy and total CPU time in jiffies, from
// the first line of /proc/stat.
func MachineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// BusySince returns the share of the machine's CPU busy since the sample.
func BusySince(busy0, total0 int64) float64 {
	busy, total := MachineCPU()
	if total == total0 {
		return 0
	}
	return float64(busy-busy0) / float64(total-total0)
}
