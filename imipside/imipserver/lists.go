package imipserver

import (
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"imip-transport/imipside/wire"
)

// onLIST handles LIST ADD / ACCEPT / REJECT / REMOVE (docs/PROTOCOL.md §8). Lists
// are one-directional: A's list holds B once B accepted A's request.
func (c *conn) onLIST(b *wire.Block) bool {
	sub, rest := b.Word()
	// ACCEPT carries `<number> "<nick>"`; the others a bare number. Accept
	// either form everywhere.
	n, _, err := wire.ParseFrom(rest)
	op := strings.ToUpper(sub)
	switch op {
	case "ADD", "ACCEPT", "REJECT", "REMOVE":
	default:
		c.sendACK(b, wire.CodeNotAllowed)
		return true
	}
	if err != nil || n == c.num {
		c.sendACK(b, wire.CodeIllegalUser)
		return true
	}
	s := c.srv
	if op == "ADD" && !c.pace.Allow() {
		c.sendACK(b, wire.CodeTooFast)
		return true
	}
	if _, err := s.store.Account(s.ctx, n); err != nil {
		if errors.Is(err, ErrNotFound) {
			c.sendACK(b, wire.CodeIllegalUser)
			return true
		}
		c.log().Error("imipserver: list: store", "err", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch op {
	case "ADD":
		err = c.listAdd(b, n)
	case "ACCEPT":
		err = c.listAccept(b, n)
	case "REJECT":
		err = c.listReject(b, n)
	case "REMOVE":
		err = c.listRemove(b, n)
	}
	if err != nil {
		c.log().Error("imipserver: list "+op+": store", "err", err)
		return false
	}
	return true
}

// listAdd: c asks to add n. The request is stored until n answers, and
// shown to n now if n is online, else at each of n's logins. When n is
// already on c's list, n's current STAT is sent again instead.
func (c *conn) listAdd(b *wire.Block, n wire.Number) error {
	s := c.srv
	has, err := s.store.HasContact(s.ctx, c.num, n)
	if err != nil {
		return err
	}
	if has {
		c.sendACK(b, wire.CodeOK)
		st, text := s.presenceOf(n)
		c.sendSTAT(n, st, text)
		return nil
	}
	pending, err := s.store.Requests(s.ctx, n)
	if err != nil {
		return err
	}
	for _, p := range pending {
		if p.From == c.num {
			// The same request again: n has it (or gets it at its next
			// login); it is not pushed twice.
			c.sendACK(b, wire.CodeOK)
			return nil
		}
	}
	if len(pending) >= s.cfg.Abuse.MaxRequestsPerRecipient {
		c.log().Info("imipserver: contact request refused: recipient holds too many", "to", n)
		c.sendACK(b, wire.CodeRecipientFull)
		return nil
	}
	r := Request{From: c.num, To: n, Text: cutText(string(b.Body), MaxRequestText), Time: time.Now().UTC().Truncate(time.Second)}
	if err := s.store.PutRequest(s.ctx, r); err != nil {
		return err
	}
	c.sendACK(b, wire.CodeOK)
	if rc := s.online[n]; rc != nil {
		rc.sendListAdd(c.num, c.nick, r.Text)
	}
	return nil
}

// listAccept: c accepts n's request. n's list gains c, and n (when online)
// receives c's current STAT. Without a pending request the answer is
// ACK 812, unless c is already on n's list (ACK 600, nothing changes).
func (c *conn) listAccept(b *wire.Block, n wire.Number) error {
	s := c.srv
	had, err := s.store.DeleteRequest(s.ctx, n, c.num)
	if err != nil {
		return err
	}
	if !had {
		has, err := s.store.HasContact(s.ctx, n, c.num)
		if err != nil {
			return err
		}
		if has {
			c.sendACK(b, wire.CodeOK)
		} else {
			c.sendACK(b, wire.CodeNotAllowed)
		}
		return nil
	}
	if err := s.store.AddContact(s.ctx, n, c.num); err != nil {
		return err
	}
	c.sendACK(b, wire.CodeOK)
	if rc := s.online[n]; rc != nil {
		st, text := visible(c.status, c.text)
		rc.sendSTAT(c.num, st, text)
	}
	return nil
}

// listReject: c refuses n's request. n (when online) receives
// S LIST REJECT <c> [ours]. Rejecting when nothing is pending is a no-op
// answered with ACK 600.
func (c *conn) listReject(b *wire.Block, n wire.Number) error {
	s := c.srv
	had, err := s.store.DeleteRequest(s.ctx, n, c.num)
	if err != nil {
		return err
	}
	c.sendACK(b, wire.CodeOK)
	if rc := s.online[n]; had && rc != nil && !s.cfg.Faults.NoOurs {
		rc.send(wire.TypeLIST, "REJECT "+string(c.num), []wire.Header{hdr(wire.HdrFrom, string(c.num))}, "")
	}
	return nil
}

// listRemove: c drops n from its own list (and withdraws a pending request
// to n). Only c's list changes: n's list keeps c if it held it. n (when
// online and when it was on c's list) receives S LIST REMOVE <c> [ours].
func (c *conn) listRemove(b *wire.Block, n wire.Number) error {
	s := c.srv
	removed, err := s.store.RemoveContact(s.ctx, c.num, n)
	if err != nil {
		return err
	}
	if _, err := s.store.DeleteRequest(s.ctx, c.num, n); err != nil {
		return err
	}
	c.sendACK(b, wire.CodeOK)
	if rc := s.online[n]; removed && rc != nil && !s.cfg.Faults.NoOurs {
		rc.send(wire.TypeLIST, "REMOVE "+string(c.num), []wire.Header{
			hdr(wire.HdrFrom, string(c.num)),
			hdr(wire.HdrList, wire.ListBuddy),
		}, "")
	}
	return nil
}

// sendListAdd queues S LIST ADD: from asks to add c.
func (c *conn) sendListAdd(from wire.Number, nick, text string) {
	hdrs := []wire.Header{
		hdr(wire.HdrFrom, wire.FormatFrom(from, nick)),
		hdr(wire.HdrList, wire.ListBuddy),
	}
	buf, _, err := c.srv.encodeID(wire.TypeLIST, "ADD", hdrs, text)
	if err != nil {
		c.log().Error("imipserver: cannot encode LIST ADD", "err", err)
		return
	}
	// The request is stored: when the queue is half full it is not pushed
	// now (the user gets it at its next login), rather than overflow the
	// queue and disconnect the user.
	if !c.enqueueMax(outItem{buf: buf}, c.srv.pushBudget()) {
		c.log().Info("imipserver: contact request not pushed now: queue half full", "from", from)
	}
}

// MaxRequestText is the most bytes of a contact request's text the server
// keeps [ours]; a longer one is cut (on a character boundary).
const MaxRequestText = 1024

// cutText returns s cut to at most n bytes, on a UTF-8 boundary.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
