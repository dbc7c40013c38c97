package retry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFatal(t *testing.T) {
	tests := []struct {
		err   error
		fatal bool
	}{
		{nil, false},
		{errors.New("dial tcp 127.0.0.1:9092: connect: connection refused"), false},
		{errors.New("kafka.(*Client).CreateTopics: [8] Broker Not Available"), false},
		{errors.New("i/o timeout"), false},
		{errors.New("influxdb: 503 Service Unavailable"), false},
		{fmt.Errorf("wrapped: %w", x509.UnknownAuthorityError{}), true},
		{fmt.Errorf("wrapped: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "kafka"}), true},
		{errors.New("gocql: unable to create session: tls: failed to verify certificate: x509: certificate signed by unknown authority"), true},
		{errors.New("remote error: tls: bad certificate"), true},
		{errors.New("[58] SASL Authentication Failed: invalid credentials"), true},
		{errors.New("Provided username cassandra and/or password are incorrect"), true},
		{errors.New("not Authorized"), true},
		{errors.New("bad user name or password"), true},
		{errors.New(`401 Unauthorized: {"code":"unauthorized","message":"unauthorized access"}`), true},
	}
	for _, tt := range tests {
		require.Equal(t, tt.fatal, Fatal(tt.err), "%v", tt.err)
	}
}

// Forever returns a fatal error at once, after one attempt.
func TestForeverStopsOnFatal(t *testing.T) {
	attempts := 0
	err := fast.Forever(context.Background(), quiet, "op", func() error {
		attempts++
		if attempts < 3 {
			return errors.New("connection refused")
		}
		return errors.New("SASL Authentication Failed")
	}, nil)
	require.EqualError(t, err, "SASL Authentication Failed")
	require.Equal(t, 3, attempts)
}
