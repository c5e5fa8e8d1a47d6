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

// codeEntry is how the gateway reports one IMIP ACK code: to the sender of
// a refused message or list request, and to a user whose login it refused.
type codeEntry struct {
	typ  stanza.ErrorType
	cond stanza.Condition
	text string // for a message or request
	// login: the condition and text for a refused login: loginCond in the
	// answer to a registration, authCond in the presence error of a login
	// that fails later (type auth); loginText in both and in the message
	// that tells the user.
	loginCond stanza.Condition
	authCond  stanza.Condition
	loginText string
}

// codeTable is the one table from IMIP ACK codes to XMPP stanza errors and
// user texts. Codes it does not list are reported with their number.
var codeTable = map[wire.Code]codeEntry{
	wire.CodeIllegalUser: {stanza.Cancel, stanza.ItemNotFound, "The IMIP network has no user with this number.",
		stanza.NotAcceptable, stanza.NotAuthorized, "The IMIP network does not know this number."},
	wire.CodeWrongPassword: {stanza.Auth, stanza.NotAuthorized, "IMIP refused the password.",
		stanza.NotAuthorized, stanza.NotAuthorized, "IMIP refused this number and password (a wrong password, or a number without an account)."},
	wire.CodeNotAllowed: {stanza.Cancel, stanza.NotAllowed, "IMIP does not allow this now.",
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP refused the login (not allowed now)."},
	wire.CodeMalformedBlock: {stanza.Modify, stanza.BadRequest, "IMIP could not understand the request.",
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP could not understand the login."},
	wire.CodeNoStatus: {stanza.Modify, stanza.BadRequest, "IMIP could not understand the request.",
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP could not understand the login."},
	wire.CodeUnknownStatus: {stanza.Modify, stanza.BadRequest, "IMIP could not understand the request.",
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP could not understand the login."},
	wire.CodeRecipientFull: {stanza.Wait, stanza.ResourceConstraint, "The IMIP contact has too many messages or requests waiting; try again later.",
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP refused the login (the server is full)."},
	wire.CodeTooFast: {stanza.Wait, stanza.ResourceConstraint, "You are sending faster than the IMIP network allows; wait a moment and try again.",
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP refused the login (too fast)."},
}

// codeInfo returns the entry of c.
func codeInfo(c wire.Code) codeEntry {
	if e, ok := codeTable[c]; ok {
		return e
	}
	text := "IMIP refused the request with code " + c.String() + "."
	return codeEntry{stanza.Cancel, stanza.UndefinedCondition, text,
		stanza.NotAcceptable, stanza.NotAcceptable, "IMIP refused the login with code " + c.String() + "."}
}

// ackError returns the stanza error for a message or request IMIP refused
// with code c.
func ackError(c wire.Code) *stanza.Error {
	e := codeInfo(c)
	return &stanza.Error{Type: e.typ, Condition: e.cond, Text: map[string]string{"": e.text}}
}

// loginError returns the stanza error, and the text, for a login IMIP
// refused with code c.
func loginError(c wire.Code) (*stanza.Error, string) {
	e := codeInfo(c)
	return &stanza.Error{Type: stanza.Auth, Condition: e.authCond, Text: map[string]string{"": e.loginText}}, e.loginText
}

func malformedError() *stanza.Error {
	return &stanza.Error{Type: stanza.Modify, Condition: stanza.JIDMalformed,
		Text: map[string]string{"": "IMIP contacts are addressed as number@gateway, digits only."}}
}

func textError(t stanza.ErrorType, c stanza.Condition, text string) stanza.Error {
	return stanza.Error{Type: t, Condition: c, Text: map[string]string{"": text}}
}
