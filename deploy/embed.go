// Package deploy embeds the deployment files that Sensorflow's binary needs
// at run time, so the file in deploy/ stays the single source.
package deploy

import _ "embed"

// CassandraSchema is deploy/cassandra/schema.cql.
//
//go:embed cassandra/schema.cql
var CassandraSchema string
