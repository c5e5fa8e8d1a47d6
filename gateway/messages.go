package gateway

import (
	"errors"
	"slices"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// delayAfter is how old a message's Timo must be to carry a XEP-0203 delay.
const delayAfter = time.Minute

// onMessage sends a user's chat or normal message with a body as MESG.
func (u *user) onMessage(m xmppside.Message) {
	if m.Body == "" {
		return // chat states, receipts and the like have no IMIP form
	}
	if u.reg == nil {
		u.g.bounce(m, textError(stanza.Auth, stanza.RegistrationRequired, "Register with the IMIP gateway first."))
		return
	}
	if m.To.Localpart() == "" {
		u.g.bounce(m, textError(stanza.Cancel, stanza.ServiceUnavailable,
			"The gateway itself takes no messages: write to number@"+u.g.cfg.Domain.String()+"."))
		return
	}
	n, err := roster.Number(m.To, u.g.cfg.Domain)
	if err != nil {
		u.g.bounce(m, *malformedError())
		return
	}
	if u.sess == nil {
		text := "Not connected to the IMIP network right now; the message was not sent."
		cond, typ := stanza.RemoteServerTimeout, stanza.Wait
		if u.link.state == linkAuthFailed {
			text = "IMIP refused your login; register again with the right password. The message was not sent."
			cond, typ = stanza.NotAuthorized, stanza.Auth
		} else if !u.res.any() {
			text = "You are not online to the IMIP gateway; send it your presence first. The message was not sent."
			cond, typ = stanza.RecipientUnavailable, stanza.Wait
		}
		u.g.bounce(m, textError(typ, cond, text))
		return
	}
	ctx, cancel := u.opCtx()
	defer cancel()
	id, err := u.sess.SendMessage(ctx, n, m.Body)
	if err != nil {
		if errors.Is(err, wire.ErrSizeTooLarge) {
			u.g.bounce(m, textError(stanza.Modify, stanza.NotAcceptable, "The message is too long for IMIP."))
			return
		}
		u.log.Warn("MESG failed", "err", err)
		u.g.bounce(m, textError(stanza.Wait, stanza.RemoteServerTimeout, "The IMIP network did not take the message."))
		return
	}
	if len(u.sent) >= maxSentMessages {
		copy(u.sent, u.sent[1:])
		u.sent = u.sent[:len(u.sent)-1]
	}
	u.sent = append(u.sent, sentMessage{imipID: id, id: m.ID, from: m.From, to: m.To, body: m.Body})
}

// onIMIP handles an event of the live IMIP session.
func (u *user) onIMIP(ev imipside.Event) {
	switch ev := ev.(type) {
	case imipside.StatEvent:
		u.onStat(ev)
	case imipside.MessageEvent:
		u.onIMIPMessage(ev)
	case imipside.MessageFailedEvent:
		u.onMessageFailed(ev)
	case imipside.ListAddEvent:
		u.onListAdd(ev)
	case imipside.ListAcceptEvent:
		u.applyRoster(roster.ServerListAccept{Number: ev.From, Nick: ev.Nick})
	case imipside.ListRejectEvent:
		u.applyRoster(roster.ServerListReject{Number: ev.From})
	case imipside.ListRemoveEvent:
		u.applyRoster(roster.ServerListRemove{Number: ev.From})
		delete(u.contacts, ev.From)
	case imipside.RequestFailedEvent:
		u.log.Warn("IMIP refused a request", "request", ev.Type, "number", ev.Number, "code", int(ev.Code))
		u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal",
			Body: "The IMIP network refused " + ev.Type + " " + string(ev.Number) + ": " + ev.Code.String()})
	}
}

// Limits on contact requests from IMIP, which any IMIP user can send.
const (
	maxPendingIn   = 100  // unanswered requests kept per user
	maxRequestText = 1024 // bytes of a request's text kept and shown
)

// onListAdd handles a contact request, within the limits: the text is cut
// to maxRequestText, and beyond maxPendingIn unanswered requests new ones
// are ignored (the IMIP server keeps them and delivers them again at the
// next login).
func (u *user) onListAdd(ev imipside.ListAddEvent) {
	if _, known := u.list.Contact(ev.From); !known {
		pending := 0
		for _, c := range u.list.Contacts() {
			if c.PendingIn {
				pending++
			}
		}
		if pending >= maxPendingIn {
			u.log.Warn("too many unanswered contact requests: one ignored", "from", ev.From, "pending", pending)
			return
		}
	}
	u.applyRoster(roster.ServerListAdd{Number: ev.From, Nick: ev.Nick, Text: truncateUTF8(ev.Text, maxRequestText)})
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// onStat caches a contact's presence and forwards it.
func (u *user) onStat(ev imipside.StatEvent) {
	u.applyRoster(roster.ServerStat{Number: ev.From})
	if ev.Status == wire.StatusOffline {
		delete(u.contacts, ev.From)
	} else {
		u.contacts[ev.From] = contactPresence{status: ev.Status, text: ev.Text}
	}
	u.sendContactPresence(ev.From, u.bare)
}

// onIMIPMessage forwards an IMIP message as a chat message.
func (u *user) onIMIPMessage(ev imipside.MessageEvent) {
	m := xmppside.Message{
		From: u.g.contactJID(ev.From),
		To:   u.bare,
		Type: "chat",
		Body: ev.Text,
		Nick: ev.Nick,
	}
	if !ev.Time.IsZero() {
		stored := ev.Time.Before(u.loginTime.Truncate(time.Second))
		if stored || time.Since(ev.Time) > delayAfter {
			m.Delay = ev.Time.UTC()
			m.DelayFrom = u.g.cfg.Domain
		}
	}
	if len(u.held) > 0 {
		// Older messages wait for the link: this one goes after them.
		u.hold(m, ev.Time)
		return
	}
	u.deliver(m, ev.Time)
}

// deliver queues an IMIP message for the user; if the component link turns
// out to be down, it comes back (evUndelivered) to be held.
func (u *user) deliver(m xmppside.Message, sent time.Time) {
	u.g.sendMessageThen(m, func(err error) {
		switch {
		case errors.Is(err, xmppside.ErrNotConnected):
			u.postAlways(evUndelivered{m: m, sent: sent, link: u.g.link.Load()})
		case err != nil:
			u.log.Warn("message from IMIP not delivered to XMPP", "from", m.From, "err", err)
		}
	})
}

// maxHeld bounds the IMIP messages a user's run loop keeps while the
// component link is down.
const maxHeld = 64

// hold keeps a message that could not be sent because the component link
// is down, to send it when the link is back (onLinkUp), marked as delayed.
// Beyond maxHeld the oldest is dropped and logged.
func (u *user) hold(m xmppside.Message, sent time.Time) { u.holdFrom(m, sent, 0) }

// holdFrom is hold for a message whose send failed on component link
// failedOn (0: none): when a newer link is up already, the held messages
// go at once.
func (u *user) holdFrom(m xmppside.Message, sent time.Time, failedOn uint64) {
	if m.Delay.IsZero() {
		if sent.IsZero() {
			sent = time.Now()
		}
		m.Delay, m.DelayFrom = sent.UTC().Truncate(time.Second), u.g.cfg.Domain
	}
	if len(u.held) >= maxHeld {
		u.log.Warn("component link down too long: oldest held IMIP message dropped", "from", u.held[0].From)
		u.held = slices.Delete(u.held, 0, 1)
	}
	u.held = append(u.held, m)
	if failedOn != 0 && u.g.up.Load() && u.g.link.Load() > failedOn {
		// A new link came up before this one was known undelivered.
		u.flushHeld()
	}
}

// flushHeld sends the messages held while the link was down, in order;
// those that still cannot be sent come back to be held.
func (u *user) flushHeld() {
	held := u.held
	u.held = nil
	for _, m := range held {
		u.deliver(m, m.Delay)
	}
}

// onMessageFailed reports an IMIP refusal of a message to its sender, with
// the original id.
func (u *user) onMessageFailed(ev imipside.MessageFailedEvent) {
	for i, s := range u.sent {
		if s.imipID != ev.ID {
			continue
		}
		u.sent = append(u.sent[:i], u.sent[i+1:]...)
		e := ackError(ev.Code)
		u.g.bounce(xmppside.Message{ID: s.id, From: s.from, To: s.to, Body: s.body}, *e)
		return
	}
	u.log.Info("IMIP refused a message the gateway no longer remembers", "to", ev.To, "code", int(ev.Code))
}
