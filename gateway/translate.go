package gateway

import (
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// showToStatus maps an XMPP show value to an IMIP status:
// none or chat -> ONLINE, away or xa -> AWAY, dnd -> BUSY.
func showToStatus(show string) wire.Status {
	switch show {
	case "away", "xa":
		return wire.StatusAway
	case "dnd":
		return wire.StatusBusy
	default:
		return wire.StatusOnline
	}
}

// statToPresence maps an IMIP status to a presence: ONLINE -> available,
// AWAY -> away, BUSY -> dnd, OFFLINE (or anything unknown) -> unavailable.
func statToPresence(st wire.Status, text string) xmppside.Presence {
	p := xmppside.Presence{Status: text}
	switch st {
	case wire.StatusOnline:
	case wire.StatusAway:
		p.Show = "away"
	case wire.StatusBusy:
		p.Show = "dnd"
	default:
		p.Type = "unavailable"
	}
	return p
}

// ackCondition is the one table from IMIP ACK codes to XMPP stanza errors.
func ackCondition(c wire.Code) (stanza.ErrorType, stanza.Condition, string) {
	switch c {
	case wire.CodeIllegalUser:
		return stanza.Cancel, stanza.ItemNotFound, "The IMIP network has no user with this number."
	case wire.CodeWrongPassword:
		return stanza.Auth, stanza.NotAuthorized, "IMIP refused the password."
	case wire.CodeNotAllowed:
		return stanza.Cancel, stanza.NotAllowed, "IMIP does not allow this now."
	case wire.CodeMalformedBlock, wire.CodeNoStatus, wire.CodeUnknownStatus:
		return stanza.Modify, stanza.BadRequest, "IMIP could not understand the request."
	default:
		return stanza.Cancel, stanza.UndefinedCondition, "IMIP refused the request with code " + c.String() + "."
	}
}

// ackError returns the stanza error for an IMIP ACK code.
func ackError(c wire.Code) *stanza.Error {
	t, cond, text := ackCondition(c)
	return &stanza.Error{Type: t, Condition: cond, Text: map[string]string{"": text}}
}

// loginError returns the stanza error for a refused login.
func loginError(c wire.Code) *stanza.Error {
	switch c {
	case wire.CodeWrongPassword:
		return &stanza.Error{Type: stanza.Auth, Condition: stanza.NotAuthorized,
			Text: map[string]string{"": "IMIP login failed: wrong password."}}
	case wire.CodeIllegalUser:
		return &stanza.Error{Type: stanza.Auth, Condition: stanza.NotAuthorized,
			Text: map[string]string{"": "IMIP login failed: unknown number."}}
	}
	return ackError(c)
}

func malformedError() *stanza.Error {
	return &stanza.Error{Type: stanza.Modify, Condition: stanza.JIDMalformed,
		Text: map[string]string{"": "IMIP contacts are addressed as number@gateway, digits only."}}
}

func textError(t stanza.ErrorType, c stanza.Condition, text string) stanza.Error {
	return stanza.Error{Type: t, Condition: c, Text: map[string]string{"": text}}
}
