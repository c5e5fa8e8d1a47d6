package imipserver

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"imip-transport/imipside/wire"
)

// handle handles one block from the client. It returns false when the
// connection is to end.
func (c *conn) handle(b *wire.Block) bool {
	if c.num == "" {
		switch b.Type {
		case wire.TypeHELO:
			c.onHELO()
			return true
		case wire.TypeLOGN:
			return c.onLOGN(b)
		}
		c.sendACK(b, wire.CodeNotAllowed)
		return true
	}
	switch b.Type {
	case wire.TypeSTAT:
		c.onSTAT(b)
	case wire.TypeMESG:
		return c.onMESG(b)
	case wire.TypeLIST:
		return c.onLIST(b)
	case wire.TypePING:
		c.sendACK(b, wire.CodeOK)
	case wire.TypeDISC:
		c.answerThenClose(b)
		return false
	case wire.TypeACK:
		// Plain IMIP clients do not acknowledge server blocks: ignored,
		// except a mesg-ack confirm.
		c.onClientACK(b)
	default: // HELO and LOGN after login, and unknown types
		c.sendACK(b, wire.CodeNotAllowed)
	}
	return true
}

// onHELO answers with the server's HELO and the connection's salt.
func (c *conn) onHELO() {
	if c.salt == "" {
		c.salt = newSalt()
	}
	cfg := &c.srv.cfg
	ka := int((cfg.KeepAlive + time.Second - 1) / time.Second)
	caps := wire.CapabilityLists
	if !cfg.Faults.NoMesgAck {
		caps += "," + capMesgAck
	}
	c.send(wire.TypeHELO, "", []wire.Header{
		hdr(wire.HdrAuthType, wire.AuthTypeMD5),
		hdr(wire.HdrCapabilities, caps),
		hdr(wire.HdrKeepAlive, strconv.Itoa(ka)),
		hdr(wire.HdrProtocol, wire.ProtocolIMIP10),
		hdr(wire.HdrRegistration, cfg.RegistrationURL),
		hdr(wire.HdrService, cfg.Service),
		hdr(wire.HdrServiceDisplay, cfg.DisplayName),
	}, c.salt)
}

// newSalt returns the decimal text of a random 32-bit number.
func newSalt() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 10)
}

// unknownPassword stands in for the password of a number that does not
// exist, so that its login costs what a wrong password costs.
const unknownPassword = "\x00unknown"

// onLOGN checks the login. Failures are answered with ACK 810 (wrong
// password, unknown number, or too many refused logins) or 811 (a number
// that is not digits), and the connection is closed.
func (c *conn) onLOGN(b *wire.Block) bool {
	if c.salt == "" {
		c.sendACK(b, wire.CodeNotAllowed) // LOGN before HELO: no salt yet
		return true
	}
	s := c.srv
	n, err := wire.ParseNumber(strings.TrimSpace(b.Arg))
	if err != nil {
		c.log().Info("imipserver: login refused: illegal number")
		s.guard.refused(c.addr, "")
		return c.refuse(b, wire.CodeIllegalUser)
	}
	if !s.guard.loginAllowed(c.addr, n) {
		// Beyond the refused-login budget of the address or the number:
		// the same answer as a wrong password, without a check.
		c.log().Info("imipserver: login refused: too many refused logins", "number", n)
		return c.refuse(b, wire.CodeWrongPassword)
	}
	acct, err := s.store.Account(s.ctx, n)
	known := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.log().Error("imipserver: login: store", "number", n, "err", err)
		return false
	}
	if !known {
		// An unknown number is answered exactly like a wrong password
		// (and checked like one), so numbers cannot be enumerated.
		acct.Password = unknownPassword
	}
	want := wire.AuthDigest(c.salt, acct.Password)
	got := strings.ToLower(strings.TrimSpace(string(b.Body)))
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 || !known {
		c.log().Info("imipserver: login refused: wrong password or unknown number", "number", n, "known", known)
		s.guard.refused(c.addr, n)
		return c.refuse(b, wire.CodeWrongPassword)
	}
	return c.login(b, acct)
}

func (c *conn) refuse(b *wire.Block, code wire.Code) bool {
	c.sendACK(b, code)
	c.closeAfterFlush()
	return false
}

// login makes c the user's connection. An older connection of the same
// user is closed (the newest wins), without an OFFLINE fan-out since the
// user stays online. Held messages are pushed last, by deliver.
func (c *conn) login(b *wire.Block, acct Account) bool {
	s := c.srv
	ctx := s.ctx
	// Set before the conn is published or its writer runs; read-only after.
	c.confirms = !s.cfg.Faults.NoMesgAck && hasToken(b.Get(wire.HdrCapabilities), capMesgAck)
	s.mu.Lock()
	contacts, err := s.store.Contacts(ctx, acct.Number)
	if err != nil {
		s.mu.Unlock()
		c.log().Error("imipserver: login: store", "err", err)
		return false
	}
	reqs, err := s.store.Requests(ctx, acct.Number)
	if err != nil {
		s.mu.Unlock()
		c.log().Error("imipserver: login: store", "err", err)
		return false
	}

	hdrs := []wire.Header{hdr(wire.HdrReference, b.Get(wire.HdrID))}
	if _, ok := b.Lookup(wire.HdrID); !ok {
		hdrs = hdrs[:0]
	}
	if len(contacts) > 0 {
		hdrs = append(hdrs, hdr(wire.HdrBuddy, wire.FormatBuddyList(contacts)))
	}
	if !c.send(wire.TypeLOGN, string(acct.Number), hdrs, "") {
		s.mu.Unlock()
		return false
	}
	if s.cfg.Faults.DropAfterLogin {
		s.mu.Unlock()
		c.log().Info("imipserver: fault: dropping connection after login", "number", acct.Number)
		c.closeAfterFlush()
		return false
	}

	old := s.online[acct.Number]
	if old != nil {
		old.log().Info("imipserver: replaced by a new login, closing")
		old.kill()
	}
	c.num, c.nick = acct.Number, acct.Nick
	s.guard.loggedIn(c.addr, c.num)
	lim := s.cfg.Abuse
	c.pace = rate.NewLimiter(rate.Limit(lim.SendRate), lim.SendBurst)
	c.status, c.text = wire.StatusOnline, ""
	c.dmu.Lock()
	c.dirty = true // held messages may wait: no live push overtakes them
	c.dmu.Unlock()
	c.logp.Store(c.log().With("number", string(acct.Number)))
	s.online[acct.Number] = c
	c.log().Info("imipserver: logged in", "contacts", len(contacts), "requests", len(reqs), "mesg-ack", c.confirms)

	if !s.cfg.Faults.NoOurs {
		for _, bd := range contacts {
			if oc := s.online[bd.Number]; oc != nil && oc.status != wire.StatusOffline {
				c.sendSTAT(bd.Number, oc.status, oc.text)
			}
		}
	}
	for _, r := range reqs {
		c.sendListAdd(r.From, s.nickOf(r.From), r.Text)
	}
	s.announce(acct.Number, wire.StatusOnline, "")
	s.mu.Unlock()
	if old != nil {
		// The old connection's held messages are stored before anything
		// stored for this user from now on (senders that find this
		// connection wait on its storeMu), so a sender's order holds.
		c.storeMu.Lock()
		old.endHeld()
		c.storeMu.Unlock()
	}
	c.deliver()
	return true
}

// nickOf returns the user's nick, or "" when it cannot be read.
func (s *Server) nickOf(n wire.Number) string {
	a, err := s.store.Account(s.ctx, n)
	if err != nil {
		return ""
	}
	return a.Nick
}
