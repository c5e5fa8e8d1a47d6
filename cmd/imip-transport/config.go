package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/internal/app"
	"imip-transport/internal/metrics"
	"imip-transport/internal/seal"
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
	// Monitoring is the /metrics and /healthz listener (off unless set).
	Monitoring MonitoringConfig `toml:"monitoring"`
	// Admin names the administrators of the ad-hoc commands.
	Admin AdminConfig `toml:"admin"`
	// Cluster makes the transport one instance of several (see
	// docs/DEPLOYMENT.md, "Several instances").
	Cluster ClusterConfig `toml:"cluster"`
}

// AdminConfig lists who may run the administrators' ad-hoc commands.
type AdminConfig struct {
	// JIDs are bare JIDs (user@host).
	JIDs []string `toml:"jids"`
}

// adminJIDs parses Admin.JIDs; check reports the bad ones.
func (c *Config) adminJIDs() ([]jid.JID, error) {
	var out []jid.JID
	var errs []error
	for _, s := range c.Admin.JIDs {
		j, err := jid.Parse(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("admin.jids: %q is not a JID: %w", s, err))
		case j.Localpart() == "" || j.Resourcepart() != "":
			errs = append(errs, fmt.Errorf("admin.jids: %q is not a bare user JID (user@host)", s))
		default:
			out = append(out, j)
		}
	}
	return out, errors.Join(errs...)
}

// MonitoringConfig is the HTTP listener of the monitoring endpoints.
type MonitoringConfig struct {
	// Listen is host:port; empty: no listener.
	Listen string `toml:"listen"`
	// Pprof adds the net/http/pprof handlers on the same listener.
	Pprof bool `toml:"pprof"`
	// AllowRemote allows a Listen address that is not loopback (the
	// endpoints have no authentication).
	AllowRemote bool `toml:"allow_remote"`
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
	// MaxRegistrations is xmppside.Config.MaxRegistrations (0: its default).
	MaxRegistrations int `toml:"max_registrations"`
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
	// KeyFile seals the IMIP passwords in the database
	// (sqlitestore.Options.KeyFile).
	KeyFile string `toml:"key_file"`
	// DSN is the PostgreSQL connection string (driver "postgres"): a libpq
	// URL or key=value string, as pgx parses it.
	DSN string `toml:"dsn"`
	// PasswordFile holds the PostgreSQL password (driver "postgres"); read
	// into Password, trimmed, never logged.
	PasswordFile string `toml:"password_file"`
	Password     string `toml:"-"`
	// HoldWrites is gateway.Config.HoldWrites: how long a message's write
	// waits for the other side's confirmation ("0s": none, every message
	// is written before it goes on; unset: the gateway's default).
	HoldWrites    Duration `toml:"hold_writes"`
	holdWritesSet bool
}

// maxHoldWrites bounds storage.hold_writes.
const maxHoldWrites = 5 * time.Second

// holdWrites returns the gateway's HoldWrites.
func (s StorageConfig) holdWrites() time.Duration {
	if s.holdWritesSet && s.HoldWrites.Duration == 0 {
		return -1 // written first
	}
	return s.HoldWrites.Duration
}

// ClusterConfig is the [cluster] section: several instances of the
// transport on one PostgreSQL store, behind ejabberd's balancing of the
// component domain over several connections.
type ClusterConfig struct {
	Enabled bool `toml:"enabled"`
	// Name is shown in logs (default: host name and PID).
	Name string `toml:"name"`
	// Slots is ejabberd's component_number for the domain; every instance
	// uses the same.
	Slots int `toml:"slots"`
	// CheckInterval is how often an instance looks for dead instances and
	// free slots (default 250 ms).
	CheckInterval Duration `toml:"check_interval"`
	// HandoverTimeout bounds the wait for another instance to give up a
	// user (default 10 s).
	HandoverTimeout Duration `toml:"handover_timeout"`
}

// maxSlots bounds cluster.slots.
const maxSlots = 64

// check returns the section's errors.
func (c ClusterConfig) check(s StorageConfig) []error {
	if !c.Enabled {
		if c.Slots != 0 || c.Name != "" || c.CheckInterval.Duration != 0 || c.HandoverTimeout.Duration != 0 {
			return []error{errors.New("cluster: settings given but cluster.enabled is false")}
		}
		return nil
	}
	var errs []error
	if s.Driver != "postgres" {
		errs = append(errs, errors.New("cluster.enabled needs storage.driver = \"postgres\": the instances share its database"))
	}
	if c.Slots < 1 || c.Slots > maxSlots {
		errs = append(errs, fmt.Errorf("cluster.slots must be between 1 and %d: ejabberd's component_number for the domain", maxSlots))
	}
	if d := c.CheckInterval.Duration; d < 0 || (d > 0 && (d < 10*time.Millisecond || d > time.Minute)) {
		errs = append(errs, errors.New("cluster.check_interval must be between 10ms and 1m (default 250ms)"))
	}
	if d := c.HandoverTimeout.Duration; d < 0 || (d > 0 && (d < time.Second || d > 10*time.Minute)) {
		errs = append(errs, errors.New("cluster.handover_timeout must be between 1s and 10m (default 10s)"))
	}
	return errs
}

// options returns the app's cluster options, nil when disabled.
func (c ClusterConfig) options(s StorageConfig) *app.ClusterOptions {
	if !c.Enabled {
		return nil
	}
	return &app.ClusterOptions{DSN: s.DSN, Password: s.Password, Name: c.Name, Slots: c.Slots,
		CheckInterval: c.CheckInterval.Duration, HandoverTimeout: c.HandoverTimeout.Duration}
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

// loadConfig reads and checks the file at path, the secret file included.
func loadConfig(path string) (*Config, error) { return decodeConfig(path, true) }

// decodeConfig reads and checks the file at path; readSecret says whether
// the secret file is read (rotate-key does not need the secret, and may run
// where it is not readable, such as outside the service's credentials).
func decodeConfig(path string, readSecret bool) (*Config, error) {
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
	c.Storage.holdWritesSet = md.IsDefined("storage", "hold_writes")
	if c.Storage.HoldWrites.Duration > maxHoldWrites {
		return nil, fmt.Errorf("config %s: storage.hold_writes %v is above %v", path, c.Storage.HoldWrites.Duration, maxHoldWrites)
	}
	if err := c.check(readSecret); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// check validates the configuration, reads the secret file when
// readSecret is true, and checks the key file (well-formed when present,
// else a directory it can be created in).
func (c *Config) check(readSecret bool) error {
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
	case c.XMPP.SecretFile != "" && !readSecret:
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
	if n := c.XMPP.MaxRegistrations; n < 0 || n > 10000 {
		errs = append(errs, fmt.Errorf("xmpp.max_registrations must be 0 (default %d) or between 1 and 10000", xmppside.DefaultMaxRegistrations))
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
		if c.Storage.KeyFile == "" {
			errs = append(errs, errors.New("storage.key_file is required: the key that seals the IMIP passwords in the database (created on first run)"))
		} else if err := checkKeyFile(c.Storage.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("storage.key_file: %w", err))
		}
		if c.Storage.DSN != "" || c.Storage.PasswordFile != "" {
			errs = append(errs, errors.New("storage.dsn and storage.password_file are for the postgres driver"))
		}
	case "postgres":
		errs = append(errs, c.Storage.checkPostgres()...)
	default:
		errs = append(errs, fmt.Errorf("storage.driver %q is not supported (use \"sqlite\" or \"postgres\")", c.Storage.Driver))
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
	errs = append(errs, c.Cluster.check(c.Storage)...)
	if m := c.Monitoring; m.Listen != "" {
		if _, port, err := net.SplitHostPort(m.Listen); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("monitoring.listen %q: want host:port, such as 127.0.0.1:9105", m.Listen))
		} else if !metrics.IsLoopback(m.Listen) && !m.AllowRemote {
			errs = append(errs, fmt.Errorf("monitoring.listen %q is not a loopback address: the endpoints have no authentication; set monitoring.allow_remote = true to listen there anyway", m.Listen))
		}
	} else if c.Monitoring.Pprof {
		errs = append(errs, errors.New("monitoring.pprof needs monitoring.listen"))
	}
	if _, err := c.adminJIDs(); err != nil {
		errs = append(errs, err)
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

// checkKeyFile checks a key file that exists, or else the directory that
// will receive it on first run.
func checkKeyFile(path string) error {
	err := seal.CheckFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return seal.CheckDir(filepath.Dir(path))
	}
	return err
}

// A warning names a file that holds a secret and that group or others may
// read.
type warning struct {
	msg  string
	path string
	mode fs.FileMode
}

// warnings returns the files holding secrets that group or others may
// read: the component secret file, the configuration file itself when it
// holds the secret inline, and the key file.
func (c *Config) warnings(cfgPath string) []warning {
	var ws []warning
	check := func(path, msg string) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
			ws = append(ws, warning{msg: msg, path: path, mode: fi.Mode().Perm()})
		}
	}
	if c.XMPP.SecretFile != "" {
		check(c.XMPP.SecretFile, "secret file is readable by group or others; it holds the component secret")
	} else if c.XMPP.Secret != "" {
		check(cfgPath, "config file holds the component secret (xmpp.secret) and is readable by group or others; use secret_file, or make the file 0600")
	}
	if m := c.Monitoring; m.Listen != "" && !metrics.IsLoopback(m.Listen) {
		msg := "monitoring listens beyond loopback (allow_remote): /metrics and /healthz have no authentication; keep the port behind a firewall"
		if m.Pprof {
			msg = "monitoring listens beyond loopback (allow_remote) with pprof on: profiles, goroutine stacks and the command line are open to whoever reaches the port"
		}
		ws = append(ws, warning{msg: msg, path: m.Listen})
	}
	if c.Storage.PasswordFile != "" {
		check(c.Storage.PasswordFile, "PostgreSQL password file is readable by group or others; it holds the database password")
	}
	if c.Storage.KeyFile != "" {
		check(c.Storage.KeyFile, "key file is readable by group or others; it unseals the stored IMIP passwords")
	}
	return ws
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
