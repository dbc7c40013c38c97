package incident

import (
	"errors"
	"flag"
	"time"
)

// Config says when alerts are one incident. Defaults are those of
// RegisterFlags.
type Config struct {
	// Window: device alerts that started within it (in the readings' time)
	// count together; an outage closes after it without a member (wall clock).
	Window time.Duration
	// Share: an incident needs more than this share of the site's devices.
	Share float64
	// MinDevices: and at least this many devices.
	MinDevices int
	// Hold: how long a device's gap alert waits, at most, to learn whether it
	// is part of an outage before it is published on its own. Other kinds
	// are never held.
	Hold time.Duration
	// MaxMembers bounds the device ids an incident lists (the count is
	// always complete).
	MaxMembers int
	// CensusTTL: a census older than this no longer counts towards a site's
	// devices.
	CensusTTL time.Duration
}

// RegisterFlags registers the incidents.* grouping flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Window, "incidents.window", time.Minute, "Device alerts of one site that start within this time of one another (in the readings' time) are counted together; an outage closes once no member alert arrived for this long (a site_wide incident once its members resolved).")
	fs.Float64Var(&c.Share, "incidents.share", 0.5, "An incident needs more than this share of the site's devices (those that sent readings in the last 5 minutes).")
	fs.IntVar(&c.MinDevices, "incidents.min-devices", 5, "An incident needs at least this many devices, as well as more than -incidents.share of the site.")
	fs.DurationVar(&c.Hold, "incidents.hold", 10*time.Second, "Longest wait of a device's gap alert to learn whether it is part of an outage before it is published alone (other alert kinds are never held).")
	fs.IntVar(&c.MaxMembers, "incidents.max-members", 500, "Most device ids an incident alert lists (member_count is always complete).")
	c.CensusTTL = 10 * time.Minute
}

// DefaultConfig returns the defaults of RegisterFlags.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	return c
}

// Validate checks the settings.
func (c *Config) Validate() error {
	switch {
	case c.Window <= 0:
		return errors.New("incidents.window must be positive")
	case c.Share < 0 || c.Share >= 1:
		return errors.New("incidents.share must be in [0, 1)")
	case c.MinDevices < 2:
		return errors.New("incidents.min-devices must be at least 2")
	case c.Hold < 0:
		return errors.New("incidents.hold must not be negative")
	case c.MaxMembers < 1:
		return errors.New("incidents.max-members must be positive")
	}
	return nil
}
