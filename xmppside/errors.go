package xmppside

import (
	"errors"

	"mellium.im/xmpp/stanza"
)

var (
	// ErrNotConnected is returned by the send methods while the link to the
	// server is down.
	ErrNotConnected = errors.New("xmppside: not connected")
	// ErrRemoteUnreachable is returned by Barrier when the server answered
	// that it cannot reach the domain asked (remote-server-not-found or
	// remote-server-timeout): the stanzas to that domain written before the
	// barrier were bounced, not delivered.
	ErrRemoteUnreachable = errors.New("xmppside: the server cannot reach that domain")
	// ErrNoPrivilege is returned by RosterGet and RosterSet when the server
	// did not grant the needed XEP-0356 roster privilege for that user's host.
	ErrNoPrivilege = errors.New("xmppside: no roster privilege")
	// ErrAddress is returned when a stanza would be sent with a from outside
	// the component's domain or without a to.
	ErrAddress = errors.New("xmppside: bad address")
	// ErrUnexpectedResponse is returned when an IQ reply is malformed or comes
	// from another address than the request went to.
	ErrUnexpectedResponse = errors.New("xmppside: unexpected IQ response")
	// ErrStanzaTooLarge is returned (wrapped, with the sizes) when a stanza
	// would be larger on the wire than Config.MaxStanzaSize. Nothing is
	// written and the link stays up.
	ErrStanzaTooLarge = errors.New("xmppside: stanza too large")
	// ErrInvalidStanza is returned (wrapped, with what is wrong) by
	// SendMessage and SendPresence for a value that is no valid stanza:
	// an unknown type, show or chat state, a priority out of range, or
	// type error without an Error. Nothing is written.
	ErrInvalidStanza = errors.New("xmppside: invalid stanza")
)

// Error is a stanza error the gateway wants the requester to see, with a
// readable text, e.g. Error{Condition: stanza.NotAuthorized, Text: "wrong
// password"}.
// Registrar and Gateway methods return it (or a stanza.Error) to choose the
// condition; any other error becomes internal-server-error without its text.
type Error struct {
	Condition stanza.Condition
	Text      string
	// Type is the error type; "" means the usual type for Condition.
	Type stanza.ErrorType
}

// Error implements error.
func (e Error) Error() string {
	if e.Text == "" {
		return "xmppside: " + string(e.Condition)
	}
	return "xmppside: " + string(e.Condition) + ": " + e.Text
}

// StanzaError returns the stanza.Error to put on the wire.
func (e Error) StanzaError() stanza.Error {
	se := stanza.Error{Condition: e.Condition, Type: e.Type}
	if se.Condition == "" {
		se.Condition = stanza.UndefinedCondition
	}
	if se.Type == "" {
		se.Type = defaultErrorType(se.Condition)
	}
	if e.Text != "" {
		se.Text = map[string]string{"": e.Text}
	}
	return se
}

// defaultErrorType is the type RFC 6120 section 8.3.3 recommends for each
// condition.
func defaultErrorType(c stanza.Condition) stanza.ErrorType {
	switch c {
	case stanza.BadRequest, stanza.JIDMalformed, stanza.NotAcceptable,
		stanza.PolicyViolation, stanza.Redirect, stanza.Gone:
		return stanza.Modify
	case stanza.Forbidden, stanza.NotAuthorized, stanza.RegistrationRequired,
		stanza.SubscriptionRequired:
		return stanza.Auth
	case stanza.RecipientUnavailable, stanza.RemoteServerTimeout,
		stanza.ResourceConstraint, stanza.UnexpectedRequest:
		return stanza.Wait
	default:
		return stanza.Cancel
	}
}

// newStanzaError builds a stanza error with the usual type and no text.
func newStanzaError(c stanza.Condition) stanza.Error {
	return stanza.Error{Condition: c, Type: defaultErrorType(c)}
}

// asStanzaError maps err to the error the requester sees.
// ok is false when err carried no condition: the caller then uses fallback,
// and must not show err's text to the requester.
func asStanzaError(err error, fallback stanza.Condition) (se stanza.Error, ok bool) {
	var e Error
	if errors.As(err, &e) {
		return e.StanzaError(), true
	}
	var pe *Error
	if errors.As(err, &pe) && pe != nil {
		return pe.StanzaError(), true
	}
	if errors.As(err, &se) {
		if se.Condition == "" {
			se.Condition = stanza.UndefinedCondition
		}
		if se.Type == "" {
			se.Type = defaultErrorType(se.Condition)
		}
		return se, true
	}
	return newStanzaError(fallback), false
}
