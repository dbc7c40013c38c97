package kafkax

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// ServeEmbedded runs an in-process Kafka-protocol broker (kfake) on
// 127.0.0.1:port (0: any free port; ListenAddrs tells which) for the
// zero-setup demo and hermetic tests. New topics get 6 partitions. The
// caller closes it.
func ServeEmbedded(port int) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort("127.0.0.1", p))
		}),
		kfake.DefaultNumPartitions(6),
	)
	if err != nil {
		return nil, fmt.Errorf("embedded Kafka broker on 127.0.0.1:%s: %w", strconv.Itoa(port), err)
	}
	if len(c.ListenAddrs()) == 0 {
		c.Close()
		return nil, errors.New("embedded Kafka broker has no listener")
	}
	return c, nil
}
