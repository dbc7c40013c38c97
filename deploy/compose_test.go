package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

func loadCompose(t *testing.T, env []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."), cli.WithEnv(env), cli.WithName("sensorflow"), cli.WithResolvedPaths(true))
	require.NoError(t, err)
	return opts.LoadProject(context.Background())
}

// The compose file loads, every Sensorflow command and SENSORFLOW_* variable
// is one the binary accepts, every mounted file exists, every service has a
// health check and the start-up order has no cycle.
func TestComposeFile(t *testing.T) {
	p, err := loadCompose(t, composeEnv)
	require.NoError(t, err)
	for _, want := range []string{"mosquitto", "kafka", "cassandra", "influxdb", "prometheus", "grafana", "bridge", "processor", "simulator"} {
		require.Contains(t, p.Services, want)
	}
	bin := binary(t)
	flagNames := map[string]bool{}
	for _, f := range flagsOf(t, bin) {
		flagNames["SENSORFLOW_"+strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(f))] = true
	}
	for name, svc := range p.Services {
		oneShot := svc.Restart == "no"
		if !oneShot {
			require.NotNil(t, svc.HealthCheck, "%s has no health check", name)
			require.NotEmpty(t, svc.HealthCheck.Test, name)
		}
		for dep, d := range svc.DependsOn {
			want := types.ServiceConditionHealthy
			if p.Services[dep].Restart == "no" {
				want = types.ServiceConditionCompletedSuccessfully
			}
			require.Equal(t, want, d.Condition, "%s → %s", name, dep)
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				_, err := os.Stat(v.Source)
				require.NoError(t, err, "%s mounts a missing %s", name, v.Source)
			}
		}
		if svc.Build == nil {
			continue
		}
		// A Sensorflow service: its command and environment pass the
		// binary's own start-up validation.
		env := []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range svc.Environment {
			require.True(t, flagNames[k], "%s sets %s, which no flag reads", name, k)
			if v != nil {
				env = append(env, k+"="+*v)
			}
		}
		cmd := exec.Command(bin, append(slices.Clone(svc.Command), "-validate")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %v: %s", name, svc.Command, out)
		require.Equal(t, "configuration ok: targets="+name+"\n", string(out), "the service is named after its target")
		_, err = os.Stat(filepath.Join(svc.Build.Context, svc.Build.Dockerfile))
		require.NoError(t, err)
	}
	// No cycle in depends_on.
	state := map[string]int{}
	var visit func(string)
	visit = func(n string) {
		require.NotEqual(t, 1, state[n], "dependency cycle through %s", n)
		if state[n] == 2 {
			return
		}
		state[n] = 1
		for dep := range p.Services[n].DependsOn {
			visit(dep)
		}
		state[n] = 2
	}
	for n := range p.Services {
		visit(n)
	}
}

var composeEnv = []string{"INFLUX_TOKEN=t0k3n", "INFLUX_ADMIN_PASSWORD=pw-pw-pw-pw", "GRAFANA_ADMIN_PASSWORD=pw",
	"MQTT_BRIDGE_PASSWORD=b", "MQTT_SIMULATOR_PASSWORD=s", "MQTT_ALERTS_PASSWORD=a"}

// Every secret .env.example lists is one the compose file requires, and
// the other way round.
func TestEnvExampleListsEverySecret(t *testing.T) {
	raw, err := os.ReadFile("../.env.example")
	require.NoError(t, err)
	compose, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var listed []string
	for _, line := range strings.Split(string(raw), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			listed = append(listed, k)
			require.Contains(t, string(compose), "${"+k+":?", "%s is listed but not required", k)
		}
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+):\?`).FindAllStringSubmatch(string(compose), -1) {
		require.Contains(t, listed, m[1], ".env.example misses %s", m[1])
	}
}

// No secret has a default: without .env the stack refuses to start.
func TestComposeNeedsSecrets(t *testing.T) {
	_, err := loadCompose(t, nil)
	require.ErrorContains(t, err, "INFLUX_")
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds the sensorflow binary once for the package's tests.
func binary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sensorflow-deploy-test")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sensorflow")
		out, err := exec.Command("go", "build", "-o", builtBin, "..").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return builtBin
}

// flagsOf returns the flag names the binary's -help lists.
func flagsOf(t *testing.T, bin string) []string {
	out, _ := exec.Command(bin, "-help").CombinedOutput() // -help exits 0 after printing
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9.-]+)`).FindAllStringSubmatch(string(out), -1) {
		names = append(names, m[1])
	}
	require.Contains(t, names, "kafka.brokers", "-help lists the flags: %s", out)
	return names
}
