package sink

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSchemaStatements(t *testing.T) {
	c := CassandraConfig{Keyspace: "ks1", Replication: "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"}
	stmts := c.SchemaStatements()
	require.Len(t, stmts, 5)
	require.Equal(t, "CREATE KEYSPACE IF NOT EXISTS ks1 WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}", stmts[0])
	for _, s := range stmts[1:] {
		require.True(t, strings.HasPrefix(s, "CREATE TABLE IF NOT EXISTS ks1."), s)
		require.NotContains(t, s, "--")
		require.NotContains(t, s, "sensorflow.")
	}
	require.Contains(t, stmts[1], "TimeWindowCompactionStrategy")
	require.Contains(t, stmts[1], "CLUSTERING ORDER BY (ts DESC)")
}
