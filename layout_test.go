package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/sensorflow/sensorflow"

// The layers hold: internal/ imports no service, and the processor knows
// no concrete sink (it writes through sink.Sink, sink.Spec and sink.Fanout).
func TestImportsRunDownward(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		if !strings.HasPrefix(pkg, module+"/internal/") {
			continue
		}
		for _, imp := range imports {
			if strings.HasPrefix(imp, module+"/") {
				require.True(t, strings.HasPrefix(imp, module+"/internal/"), "%s imports the service package %s", pkg, imp)
			}
		}
	}
	files, err := filepath.Glob("processor/*.go")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, concrete := range []string{"sink.Influx", "sink.NewInflux", "sink.Cassandra", "sink.NewCassandra", "sink.OpenBolt", "sink.Bolt"} {
			require.NotContains(t, string(b), concrete, "%s names a concrete sink", f)
		}
	}
}
