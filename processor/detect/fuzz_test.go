package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
