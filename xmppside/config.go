package xmppside

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mellium.im/xmpp/jid"
)

// Defaults for the zero values of Config.
const (
	DefaultMinBackoff       = 500 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultRegisterTimeout  = 30 * time.Second
	DefaultMaxRegistrations = 32
	DefaultName             = "imip-transport"
	DefaultIdentityName     = "IMIP Transport"
	DefaultInstructions     = "Enter your IMIP number and password."

	// DefaultMaxStanzaSize is the default Config.MaxStanzaSize: 256 KiB,
	// half of Prosody 0.12's component_stanza_size_limit (512 KiB), above
	// which Prosody closes the component stream. ejabberd 23.01's
	// ejabberd_service listener has no limit by default (max_stanza_size:
	// infinity). The margin covers servers that escape text more verbosely
	// than Go when they pass a stanza on (Prosody and ejabberd write a
	// quote as &quot;, 6 bytes, where Go writes &#34;, 5), so that a
	// stanza also fits the 512 KiB s2s limits of both servers.
	DefaultMaxStanzaSize = 256 << 10
	// MinMaxStanzaSize is the smallest Config.MaxStanzaSize accepted.
	MinMaxStanzaSize = 8 << 10
)

// defaultStableAfter is how long a link must have lasted for the reconnect
// backoff to start again from MinBackoff once it drops.
const defaultStableAfter = 3 * time.Second

// Config configures a Component.
// Only Domain, Server and Secret are required; every other zero value has a
// default.
type Config struct {
	// Domain is the component JID, e.g. imip.localhost.
	Domain jid.JID
	// Server is host:port of the XMPP server's component port.
	Server string
	// Secret is the shared component secret. It is never logged or traced.
	Secret string

	// Name and Version answer XEP-0092 queries (Name defaults to
	// "imip-transport", Version to "dev").
	Name, Version string
	// IdentityName is the disco#info identity name of the component
	// (default "IMIP Transport").
	IdentityName string
	// Instructions is the XEP-0077 registration instructions text.
	Instructions string
	// ContactFeatures are extra disco#info features advertised for contacts
	// (node@domain), on top of disco#info and ping.
	ContactFeatures []string

	// Logger receives connection state changes; nil means slog.Default().
	Logger *slog.Logger

	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 500ms and
	// 30s); each delay is randomised by +-50%. The delay doubles after each
	// attempt and starts again from MinBackoff after a link that stayed up
	// for 3 s.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds the TCP dial and the handshake (default 10s).
	DialTimeout time.Duration
	// RegisterTimeout bounds each Registrar (and CardProvider) call
	// (default 30s); when it fires the requester gets
	// remote-server-timeout.
	RegisterTimeout time.Duration
	// MaxRegistrations bounds the registration and vCard IQs in flight per
	// link (default 32); beyond it requesters get resource-constraint.
	MaxRegistrations int

	// MaxCommandSessions bounds the XEP-0050 command sessions open at once
	// (default DefaultMaxCommandSessions); beyond it a command that needs
	// a session gets resource-constraint. One bare JID has at most
	// MaxCommandSessionsPerUser; its oldest goes when it opens another.
	MaxCommandSessions int
	// CommandSessionTimeout is how long a command session waits for its
	// next stage (default DefaultCommandSessionTimeout); later, the
	// requester gets session-expired.
	CommandSessionTimeout time.Duration

	// MaxStanzaSize is the largest stanza the component writes, in bytes as
	// encoded on the wire (default DefaultMaxStanzaSize; at least
	// MinMaxStanzaSize). Keep it below the server's limit for the
	// component stream: a server closes the stream, and so cuts off every
	// user, when one stanza exceeds it. A message whose body makes it too
	// large is sent as several messages; any other stanza that would be too
	// large is not sent and its send method returns ErrStanzaTooLarge.
	MaxStanzaSize int

	// stableAfter is how long a link must have lasted for the reconnect
	// backoff to start again from MinBackoff (default defaultStableAfter;
	// tests shorten it).
	stableAfter time.Duration

	// Trace, if not nil, receives a copy of the traffic after the handshake
	// (the handshake, with the secret, is never traced). It is for
	// debugging only: XEP-0077 <password> values and data form
	// var="password" field values are replaced by [redacted], but the trace
	// is copied per network read and write, so a password split across two
	// of them is not recognised, and other traffic (messages, contacts) is
	// copied in clear. Treat the trace as possibly holding secrets.
	Trace io.Writer
}

func (cfg Config) withDefaults() Config {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.IdentityName == "" {
		cfg.IdentityName = DefaultIdentityName
	}
	if cfg.Instructions == "" {
		cfg.Instructions = DefaultInstructions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RegisterTimeout <= 0 {
		cfg.RegisterTimeout = DefaultRegisterTimeout
	}
	if cfg.MaxRegistrations <= 0 {
		cfg.MaxRegistrations = DefaultMaxRegistrations
	}
	if cfg.MaxCommandSessions <= 0 {
		cfg.MaxCommandSessions = DefaultMaxCommandSessions
	}
	if cfg.CommandSessionTimeout <= 0 {
		cfg.CommandSessionTimeout = DefaultCommandSessionTimeout
	}
	if cfg.MaxStanzaSize == 0 {
		cfg.MaxStanzaSize = DefaultMaxStanzaSize
	}
	if cfg.stableAfter <= 0 {
		cfg.stableAfter = defaultStableAfter
	}
	return cfg
}

// validate reports configuration mistakes that no reconnect can fix.
func (cfg Config) validate() error {
	var errs []error
	if cfg.Domain.Domainpart() == "" {
		errs = append(errs, errors.New("domain is empty"))
	}
	if cfg.Domain.Localpart() != "" || cfg.Domain.Resourcepart() != "" {
		errs = append(errs, fmt.Errorf("domain %q must be a bare domain", cfg.Domain))
	}
	if cfg.Server == "" {
		errs = append(errs, errors.New("server address is empty"))
	}
	if cfg.Secret == "" {
		errs = append(errs, errors.New("secret is empty"))
	}
	if cfg.MaxStanzaSize < MinMaxStanzaSize {
		errs = append(errs, fmt.Errorf("max stanza size %d is below the minimum %d", cfg.MaxStanzaSize, MinMaxStanzaSize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xmppside: invalid config: %w", err)
	}
	return nil
}
