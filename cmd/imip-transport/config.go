package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/xmppside"
)

// Config is the whole configuration file. Decoding is strict: an unknown
// key is an error.
type Config struct {
	XMPP    XMPPConfig    `toml:"xmpp"`
	IMIP    IMIPConfig    `toml:"imip"`
	Storage StorageConfig `toml:"storage"`
	Roster  RosterConfig  `toml:"roster"`
	Limits  LimitsConfig  `toml:"limits"`
	Log     LogConfig     `toml:"log"`
}

// LimitsConfig are the gateway's rates and bounds (gateway.Limits; zero
// values take its defaults).
type LimitsConfig struct {
	MessagesPerSecond      float64  `toml:"messages_per_second"`
	MessageBurst           int      `toml:"message_burst"`
	SubscriptionsPerSecond float64  `toml:"subscriptions_per_second"`
	SubscriptionBurst      int      `toml:"subscription_burst"`
	StatusPerSecond        float64  `toml:"status_changes_per_second"`
	StatusBurst            int      `toml:"status_change_burst"`
	RosterPerSecond        float64  `toml:"roster_changes_per_second"`
	RosterBurst            int      `toml:"roster_change_burst"`
	MaxRosterItems         int      `toml:"max_roster_items"`
	LoginsPerSecond        float64  `toml:"logins_per_second"`
	LoginBurst             int      `toml:"login_burst"`
	DeliveryTimeout        Duration `toml:"delivery_timeout"`
}

// gateway returns the limits as the gateway takes them.
func (l LimitsConfig) gateway() gateway.Limits {
	return gateway.Limits{
		MessageRate: l.MessagesPerSecond, MessageBurst: l.MessageBurst,
		SubscriptionRate: l.SubscriptionsPerSecond, SubscriptionBurst: l.SubscriptionBurst,
		StatusRate: l.StatusPerSecond, StatusBurst: l.StatusBurst,
		RosterRate: l.RosterPerSecond, RosterBurst: l.RosterBurst,
		MaxRosterItems: l.MaxRosterItems,
		LoginRate:      l.LoginsPerSecond, LoginBurst: l.LoginBurst,
	}
}

// XMPPConfig is the component link.
type XMPPConfig struct {
	Component  string   `toml:"component"`
	Server     string   `toml:"server"`
	Secret     string   `toml:"secret"`
	SecretFile string   `toml:"secret_file"`
	MinBackoff Duration `toml:"min_backoff"`
	MaxBackoff Duration `toml:"max_backoff"`
	// MaxStanzaSize is xmppside.Config.MaxStanzaSize (0: its default).
	MaxStanzaSize int `toml:"max_stanza_size"`
}

// IMIPConfig is the IMIP network.
type IMIPConfig struct {
	Server       string   `toml:"server"`
	ClientName   string   `toml:"client_name"`
	MaxBlockSize int      `toml:"max_block_size"`
	LoginTimeout Duration `toml:"login_timeout"`
	OpTimeout    Duration `toml:"op_timeout"`
	RetryMin     Duration `toml:"retry_min"`
	RetryMax     Duration `toml:"retry_max"`
}

// StorageConfig is where registrations and contacts live.
type StorageConfig struct {
	Driver string `toml:"driver"`
	Path   string `toml:"path"`
}

// RosterConfig is how IMIP contacts appear in users' rosters.
type RosterConfig struct {
	Group       string `toml:"group"`
	AllowRemove bool   `toml:"allow_remove"`
}

// LogConfig is the log output.
type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a string such as "20s".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// maxStanzaSizeCeiling is the largest xmpp.max_stanza_size accepted (no
// server default is anywhere near it; Prosody's is 512 KiB).
const maxStanzaSizeCeiling = 16 << 20

// loadConfig reads and checks the file at path.
func loadConfig(path string) (*Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// check validates the configuration and reads the secret file.
func (c *Config) check() error {
	var errs []error
	if c.XMPP.Component == "" {
		errs = append(errs, errors.New("xmpp.component is required"))
	} else if j, err := jid.Parse(c.XMPP.Component); err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		errs = append(errs, fmt.Errorf("xmpp.component %q is not a bare domain", c.XMPP.Component))
	}
	if c.XMPP.Server == "" {
		errs = append(errs, errors.New("xmpp.server is required"))
	}
	switch {
	case c.XMPP.Secret != "" && c.XMPP.SecretFile != "":
		errs = append(errs, errors.New("set xmpp.secret or xmpp.secret_file, not both"))
	case c.XMPP.SecretFile != "":
		b, err := os.ReadFile(c.XMPP.SecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("xmpp.secret_file: %w", err))
		}
		c.XMPP.Secret = strings.TrimRight(string(b), "\r\n")
		if c.XMPP.Secret == "" && err == nil {
			errs = append(errs, errors.New("xmpp.secret_file is empty"))
		}
	case c.XMPP.Secret == "":
		errs = append(errs, errors.New("xmpp.secret or xmpp.secret_file is required"))
	}
	if n := c.XMPP.MaxStanzaSize; n != 0 && (n < xmppside.MinMaxStanzaSize || n > maxStanzaSizeCeiling) {
		errs = append(errs, fmt.Errorf("xmpp.max_stanza_size must be 0 (default %d) or between %d and %d",
			xmppside.DefaultMaxStanzaSize, xmppside.MinMaxStanzaSize, maxStanzaSizeCeiling))
	}
	if c.IMIP.Server == "" {
		errs = append(errs, errors.New("imip.server is required"))
	}
	if c.IMIP.MaxBlockSize < 0 || c.IMIP.MaxBlockSize > 16<<20 {
		errs = append(errs, errors.New("imip.max_block_size must be between 0 (default 64 KiB) and 16 MiB"))
	}
	switch c.Storage.Driver {
	case "sqlite":
		if c.Storage.Path == "" {
			errs = append(errs, errors.New("storage.path is required for the sqlite driver"))
		}
	default:
		errs = append(errs, fmt.Errorf("storage.driver %q is not supported (use \"sqlite\")", c.Storage.Driver))
	}
	l := c.Limits
	for name, v := range map[string]float64{"messages_per_second": l.MessagesPerSecond, "subscriptions_per_second": l.SubscriptionsPerSecond,
		"status_changes_per_second": l.StatusPerSecond, "roster_changes_per_second": l.RosterPerSecond, "logins_per_second": l.LoginsPerSecond} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("limits.%s must not be negative", name))
		}
	}
	for name, v := range map[string]int{"message_burst": l.MessageBurst, "subscription_burst": l.SubscriptionBurst,
		"status_change_burst": l.StatusBurst, "roster_change_burst": l.RosterBurst, "max_roster_items": l.MaxRosterItems, "login_burst": l.LoginBurst} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("limits.%s must not be negative", name))
		}
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs = append(errs, err)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: use text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log.level %q: use debug, info, warn or error", s)
	}
	return l, nil
}
