package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

// FuzzLoadRules: whatever a rules file holds, loading it either fails with
// an error that names the file, or gives a configuration that validates.
func FuzzLoadRules(f *testing.F) {
	f.Add("defaults:\n  z: 6\nrules:\n  - device: \"pump-*\"\n    metric: vibration\n    high: 12\n")
	f.Add("rules:\n  - site: \"[\"\n")
	f.Add("defaults: [1, 2]\n")
	f.Add("rules:\n  - metric: temperature\n    z: -1\n")
	f.Add("&a [*a]")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string) {
		file := filepath.Join(dir, "rules.yaml")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadRules(file, DefaultConfig())
		if err != nil {
			if !strings.Contains(err.Error(), file) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted rules give an invalid configuration: %v", err)
		}
	})
}

// FuzzRestoreDevice: whatever a record of the state topic holds, restoring
// it either fails, leaving the detector as it was, or gives a device the
// detector goes on scoring, whose state encodes back to the same bytes.
func FuzzRestoreDevice(f *testing.F) {
	d := New(stateConfig())
	observeAll(d, stateFleet()[:3000])
	for _, dev := range []string{"a", "b", "c"} {
		st, _ := d.AppendDeviceState(nil, dev, "s1")
		f.Add(st)
	}
	f.Add([]byte("sfds\x01"))
	f.Fuzz(func(t *testing.T, state []byte) {
		r := New(stateConfig())
		if _, err := r.RestoreDevice("a", state); err != nil {
			if r.Series() != 0 {
				t.Fatalf("a refused state left %d series", r.Series())
			}
			return
		}
		again, _ := r.AppendDeviceState(nil, "a", "s1")
		other := New(stateConfig())
		if _, err := other.RestoreDevice("a", again); err != nil {
			t.Fatalf("a restored state does not restore again: %v", err)
		}
		if again2, _ := other.AppendDeviceState(nil, "a", "s1"); string(again2) != string(again) {
			t.Fatal("the state changed in a round trip")
		}
		rd := sensor.Reading{DeviceID: "a", Site: "s1", TS: t0.Add(100 * 24 * time.Hour), Metrics: map[string]float64{"temperature": 21, "humidity": 50}}
		r.Observe(&rd, nil, nil)
	})
}
