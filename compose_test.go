package main

import (
	"context"
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

func loadCompose(t *testing.T, env []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."), cli.WithEnv(env), cli.WithName("sensorflow"), cli.WithResolvedPaths(true))
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
	flagNames := map[string]bool{}
	var rc RunConfig
	fs := newFlagSet("", "", io.Discard)
	rc.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		flagNames["SENSORFLOW_"+strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(f.Name))] = true
	})
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
		// A Sensorflow service: its command and environment must parse.
		var c RunConfig
		fs := newFlagSet("", "", io.Discard)
		c.RegisterFlags(fs)
		require.NoError(t, fs.Parse(svc.Command), "%s: %v", name, svc.Command)
		_, err := c.targets()
		require.NoError(t, err, name)
		require.Equal(t, name, c.Targets, "the service is named after its target")
		for k := range svc.Environment {
			require.True(t, flagNames[k], "%s sets %s, which no flag reads", name, k)
		}
		_, err = os.Stat(svc.Build.Dockerfile)
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
	raw, err := os.ReadFile(".env.example")
	require.NoError(t, err)
	compose, err := os.ReadFile("docker-compose.yml")
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
