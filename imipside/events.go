package imipside

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"imip-transport/imipside/wire"
)

// Handler receives the events of a session.
//
// HandleIMIP is called on the session's reader goroutine, one event at a
// time, in the order the server sent the blocks: replies (ReplyEvent) and
// pushed blocks interleave exactly as they came on the wire, and ClosedEvent
// is always the last call.
//
// HandleIMIP may block. While it runs the session reads nothing more from
// the server, so the server's writes to this one user stall in TCP: that is
// the back-pressure of a slow consumer, and it affects no other session.
// The session keeps writing meanwhile (its writer goroutine drains the
// queue), and a keep-alive PING whose ACK cannot be read because the Handler
// holds the reader does not count against the connection.
//
// HandleIMIP may call every non-blocking method (the Send methods,
// ConfirmMessage, Logout, Kill) and Close. It must not call the blocking
// wrappers (SetStatus, ListAdd, ListAccept, ListRemove, Ping, Disconnect):
// they wait for a reply that only the goroutine running HandleIMIP can read.
type Handler interface {
	HandleIMIP(Event)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(Event)

// HandleIMIP calls f(ev).
func (f HandlerFunc) HandleIMIP(ev Event) { f(ev) }

// Event is one of StatEvent, MessageEvent, ListAddEvent, ListAcceptEvent,
// ListRejectEvent, ListRemoveEvent, ReplyEvent and ClosedEvent.
type Event interface {
	imipEvent()
}

// StatEvent is a contact's presence, pushed by the server (STAT with From).
// Status OFFLINE means the contact went offline or invisible.
type StatEvent struct {
	From   wire.Number
	Status wire.Status
	Text   string // status message, "" when none
}

// MessageEvent is a message from another user (server MESG).
//
// With the mesg-ack extension (Session.ConfirmsMessages), the server keeps
// the message until it is confirmed with Session.ConfirmMessage(BlockID), and
// pushes it again, with the same MessageID, at the next login if it was not.
type MessageEvent struct {
	BlockID   uint64 // the MESG block's ID header, 0 when absent; ConfirmMessage takes it
	MessageID string // the Message-ID header (mesg-ack), "" when absent or malformed
	From      wire.Number
	Nick      string
	To        wire.Number // the To header; the session's own number when absent
	Time      time.Time   // from Timo (or Time), UTC; zero when absent or malformed
	Text      string
}

// ListAddEvent is someone asking to add you to their contact list (server
// LIST ADD). Answer with SendListAccept or SendListReject.
type ListAddEvent struct {
	From wire.Number
	Nick string
	Text string // request text, "" when none
}

// ListAcceptEvent reports that a contact accepted your request, if the server
// says so explicitly (servers usually send the contact's STAT instead).
type ListAcceptEvent struct {
	From wire.Number
	Nick string
}

// ListRejectEvent reports that your request to add From was refused.
type ListRejectEvent struct {
	From wire.Number
}

// ListRemoveEvent reports that From dropped you from their contact list.
type ListRemoveEvent struct {
	From wire.Number
}

// The values of ReplyEvent.Type: the request's block type, with the LIST
// operation.
const (
	RequestSTAT       = "STAT"
	RequestMESG       = "MESG"
	RequestListAdd    = "LIST ADD"
	RequestListAccept = "LIST ACCEPT"
	RequestListReject = "LIST REJECT"
	RequestListRemove = "LIST REMOVE"
)

// ReplyEvent is the outcome of one request sent with a Send method (the
// blocking wrappers return theirs instead). Every such request gets exactly
// one ReplyEvent, unless the session ends first: then the ClosedEvent means
// that every request without a ReplyEvent failed (it may or may not have
// reached the server).
//
// The outcome is the server's ACK that references the request (Code 6xx:
// success, 8xx: failure, see wire.Code.OK), or, when the server answers a
// later block first, an implicit success: the server answers in order, so a
// reply to a later block means this one was accepted without an ACK (an
// Odigo server does not ACK every block; the ACK to LIST REJECT is this
// project's own rule). Then Implicit is true and Code is 600.
type ReplyEvent struct {
	ID       uint64      // the request's block ID, as returned by the Send method
	Type     string      // RequestSTAT, RequestMESG, RequestListAdd, ...
	Number   wire.Number // the MESG's recipient or the LIST contact; "" for STAT
	Code     wire.Code
	Implicit bool // no ACK referenced the request; a reply to a later block confirmed it
}

// OK reports whether the request succeeded.
func (e ReplyEvent) OK() bool { return e.Code.OK() }

// ClosedEvent is the last event of a session. Err is why it ended: nil after
// Logout, Kill or Close. Every request sent with a Send method that has had
// no ReplyEvent failed.
type ClosedEvent struct {
	Err error
}

func (StatEvent) imipEvent()       {}
func (MessageEvent) imipEvent()    {}
func (ListAddEvent) imipEvent()    {}
func (ListAcceptEvent) imipEvent() {}
func (ListRejectEvent) imipEvent() {}
func (ListRemoveEvent) imipEvent() {}
func (ReplyEvent) imipEvent()      {}
func (ClosedEvent) imipEvent()     {}

// errIgnored marks a pushed block that cannot be turned into an event; the
// session logs it at debug level and goes on.
var errIgnored = errors.New("imipside: ignored block")

func ignored(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errIgnored}, args...)...)
}

// decodePush turns a block the server sent on its own into an event.
// own is the session's number (the default To of a MESG).
func decodePush(b *wire.Block, own wire.Number) (Event, error) {
	switch strings.ToUpper(b.Type) {
	case wire.TypeSTAT:
		return decodeStat(b)
	case wire.TypeMESG:
		return decodeMesg(b, own)
	case wire.TypeLIST:
		return decodeList(b)
	}
	return nil, ignored("unknown block type %q", b.Type)
}

func decodeStat(b *wire.Block) (Event, error) {
	st, ok := wire.ParseStatus(b.Arg)
	if !ok {
		return nil, ignored("STAT with unknown presence %q", b.Arg)
	}
	from, err := fromHeader(b, "")
	if err != nil {
		return nil, err
	}
	return StatEvent{From: from.num, Status: st, Text: string(b.Body)}, nil
}

func decodeMesg(b *wire.Block, own wire.Number) (Event, error) {
	from, err := fromHeader(b, "")
	if err != nil {
		return nil, err
	}
	to := own
	if v, ok := b.Lookup(wire.HdrTo); ok {
		// Like From, To may carry a nickname: `To: 123 "me"`; it is ignored.
		if to, _, err = wire.ParseFrom(v); err != nil {
			return nil, ignored("MESG To: %v", err)
		}
	}
	id, _ := b.ID()
	t, _ := wire.MessageTime(b)
	mid, _ := b.Lookup(wire.HdrMessageID)
	if !validMessageID(mid) {
		mid = ""
	}
	return MessageEvent{BlockID: id, MessageID: mid, From: from.num, Nick: from.nick, To: to, Time: t, Text: string(b.Body)}, nil
}

// maxMessageID is the longest Message-ID the mesg-ack extension allows.
const maxMessageID = 64

// validMessageID reports whether v is a Message-ID as the mesg-ack extension
// defines it: 1 to 64 bytes of [A-Za-z0-9._-].
func validMessageID(v string) bool {
	if v == "" || len(v) > maxMessageID {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func decodeList(b *wire.Block) (Event, error) {
	sub, rest := b.Word()
	from, err := fromHeader(b, rest)
	if err != nil {
		return nil, err
	}
	switch strings.ToUpper(sub) {
	case "ADD":
		return ListAddEvent{From: from.num, Nick: from.nick, Text: string(b.Body)}, nil
	case "ACCEPT":
		return ListAcceptEvent{From: from.num, Nick: from.nick}, nil
	case "REJECT":
		return ListRejectEvent{From: from.num}, nil
	case "REMOVE":
		return ListRemoveEvent{From: from.num}, nil
	}
	return nil, ignored("unknown LIST operation %q", sub)
}

type party struct {
	num  wire.Number
	nick string
}

// fromHeader returns the sender named by the From header, or, when there is
// none, by arg (the rest of a LIST type line: `<number> ["<nick>"]`).
// A nickname missing from the header is taken from arg when it names the
// same number.
func fromHeader(b *wire.Block, arg string) (party, error) {
	var p, a party
	var errA error
	if arg = strings.TrimSpace(arg); arg != "" {
		a.num, a.nick, errA = wire.ParseFrom(arg)
	}
	v, ok := b.Lookup(wire.HdrFrom)
	if !ok {
		if arg == "" {
			return p, ignored("%s without From", b.Type)
		}
		if errA != nil {
			return p, ignored("%s %s: %v", b.Type, b.Arg, errA)
		}
		return a, nil
	}
	n, nick, err := wire.ParseFrom(v)
	if err != nil {
		return p, ignored("%s From: %v", b.Type, err)
	}
	p = party{num: n, nick: nick}
	if p.nick == "" && errA == nil && a.num == p.num {
		p.nick = a.nick
	}
	return p, nil
}

// logIgnored logs a pushed block that decodePush could not turn into an
// event. A lost MESG or LIST is a message or contact request the user never
// sees, so it is a warning; anything else (a STAT with an unknown presence,
// an unknown block type) is routine and logged at debug level. The text of a
// message is never logged.
func (s *Session) logIgnored(msg string, b *wire.Block, reason error) {
	level := slog.LevelDebug
	switch strings.ToUpper(b.Type) {
	case wire.TypeMESG, wire.TypeLIST:
		level = slog.LevelWarn
	}
	id, _ := b.ID()
	s.log.Log(context.Background(), level, msg, "number", s.number, "type", b.Type, "id", id, "reason", reason)
}
