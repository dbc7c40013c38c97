package retry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
)

// Fatal reports whether err is one that no retry can cure: the server
// refused our credentials, or one side did not trust the other's
// certificate. Forever returns such an error at once, so that a wrong
// password or CA stops a service with the server's own words instead of
// hiding in a retry loop. Client libraries do not all keep the error chain
// (some format the cause with %v), so the server's messages are matched too.
func Fatal(err error) bool {
	if err == nil {
		return false
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verification) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range fatalMessages {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// fatalMessages are lower-cased fragments of credential and certificate
// errors as the clients and servers Sensorflow talks to word them.
var fatalMessages = []string{
	"x509: ",                            // Go: the server's certificate does not verify
	"tls: failed to verify certificate", // Go
	"remote error: tls: ",               // the server refused our certificate (or has none we accept)
	"sasl authentication failed",        // Kafka [58], kafka-go
	"unsupported sasl mechanism",        // Kafka [33]
	"and/or password are incorrect",     // Cassandra PasswordAuthenticator
	"authentication required (using",    // Cassandra: credentials missing
	"bad user name or password",         // MQTT CONNACK 4, paho
	"not authorized",                    // MQTT CONNACK 5, paho ("not Authorized")
	"unauthorized access",               // InfluxDB 2: 401
	"401 unauthorized",                  // HTTP
	"403 forbidden",                     // HTTP
}
