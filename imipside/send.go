package imipside

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"imip-transport/imipside/wire"
)

func idHeader() wire.Header { return wire.Header{Name: wire.HdrID} }

// The non-blocking requests. Each one checks its block, queues it and
// returns its ID at once; it never waits for the network or the server.
// Its outcome arrives later as exactly one ReplyEvent with that ID, or not
// at all when the session ends first (see ReplyEvent). Errors, before
// anything is queued: an invalid number or text (nothing queued, no ID
// used); ErrBusy; ErrClosed when the session has ended or is logging out.

// SendStatus queues STAT st (ONLINE, AWAY, BUSY or OFFLINE; OFFLINE makes
// the user invisible) with text as the status message ("" for none).
// Like every Send method it never blocks and is safe for concurrent use:
// it returns the block's ID, and the outcome comes later as one ReplyEvent
// with that ID (none if the session ends first). A failure has Code 800 (no
// status) or 801 (unknown status). Errors: an invalid block, ErrBusy,
// ErrClosed; nothing is queued then.
func (s *Session) SendStatus(st wire.Status, text string) (uint64, error) {
	return s.sendStatus(st, text, nil)
}

func (s *Session) sendStatus(st wire.Status, text string, w *waiter) (uint64, error) {
	b := wire.Block{Type: wire.TypeSTAT, Arg: string(st), Headers: []wire.Header{idHeader()}, Body: []byte(text)}
	return s.queue(&b, qopts{typ: RequestSTAT, op: opSTAT, w: w})
}

// SendMessage queues a MESG with text to `to`, without ACK-Type, so that the
// server answers it with ACK 600 or an error (811: no such user); a server
// that does not is covered by the implicit confirmation of ReplyEvent. The
// text is at most 64 KiB minus the headers (wire.ErrSizeTooLarge).
func (s *Session) SendMessage(to wire.Number, text string) (uint64, error) {
	if !to.Valid() {
		return 0, fmt.Errorf("imipside: MESG: invalid recipient %q", to)
	}
	b := wire.Block{Type: wire.TypeMESG, Headers: []wire.Header{
		idHeader(),
		{Name: wire.HdrTo, Value: string(to)},
		{Name: wire.HdrFrom, Value: string(s.number)},
	}, Body: []byte(text)}
	return s.queue(&b, qopts{typ: RequestMESG, op: opMESG, num: to})
}

// SendListAdd queues LIST ADD n, asking to add n to the contact list, with
// text as the request message ("" for none). Success means the request was
// passed on; the server later sends n's STAT when n accepts.
func (s *Session) SendListAdd(n wire.Number, text string) (uint64, error) {
	return s.sendList(opListAdd, n, "", text, nil)
}

// SendListAccept queues LIST ACCEPT n "nick", accepting n's request to add
// the user.
func (s *Session) SendListAccept(n wire.Number, nick string) (uint64, error) {
	return s.sendList(opListAccept, n, nick, "", nil)
}

// SendListReject queues LIST REJECT n, refusing n's request to add the
// user. Its ACK is this project's own rule (docs/PROTOCOL.md [ours]): against a
// server that never sends it, the outcome is the implicit confirmation by a
// later reply.
func (s *Session) SendListReject(n wire.Number) (uint64, error) {
	return s.sendList(opListReject, n, "", "", nil)
}

// SendListRemove queues LIST REMOVE n, dropping n from the contact list.
func (s *Session) SendListRemove(n wire.Number) (uint64, error) {
	return s.sendList(opListRemove, n, "", "", nil)
}

var listOps = [...]string{opListAdd: "ADD", opListAccept: "ACCEPT", opListReject: "REJECT", opListRemove: "REMOVE"}

func (s *Session) sendList(o op, n wire.Number, nick, text string, w *waiter) (uint64, error) {
	if !n.Valid() {
		return 0, fmt.Errorf("imipside: LIST %s: invalid number %q", listOps[o], n)
	}
	hdrs := make([]wire.Header, 0, 3)
	hdrs = append(hdrs, idHeader())
	if o == opListAdd || o == opListRemove {
		hdrs = append(hdrs, wire.Header{Name: wire.HdrList, Value: wire.ListBuddy})
	}
	hdrs = append(hdrs, wire.Header{Name: wire.HdrFrom, Value: string(s.number)})
	var body []byte
	if text != "" {
		body = []byte(text)
	}
	b := wire.Block{Type: wire.TypeLIST, Arg: listOps[o] + " " + wire.FormatFrom(n, nick), Headers: hdrs, Body: body}
	return s.queue(&b, qopts{typ: opTypes[o], op: o, num: n, w: w})
}

// ConfirmMessage queues the confirmation of the pushed MESG whose block ID
// is blockID (MessageEvent.BlockID): `ACK 600` with `Reference: blockID`, as
// the mesg-ack extension defines it. It does not wait, and the server never
// answers it (no ReplyEvent). Call it once the message is safely stored;
// confirmations may go out of order. Without the extension
// (ConfirmsMessages false) it returns an error matching
// errors.ErrUnsupported and sends nothing. Other errors: ErrBusy, ErrClosed.
func (s *Session) ConfirmMessage(blockID uint64) error {
	if !s.mesgAck {
		return fmt.Errorf("imipside: confirm MESG %d: server did not offer %s: %w", blockID, wire.CapabilityMesgAck, errors.ErrUnsupported)
	}
	if blockID == 0 {
		return errors.New("imipside: confirm MESG: no block ID")
	}
	b := wire.Block{Type: wire.TypeACK, Arg: "600", Headers: []wire.Header{
		idHeader(), {Name: wire.HdrReference, Value: strconv.FormatUint(blockID, 10)},
	}}
	// Forced past MaxQueue: a confirmation is a few bytes for a MESG the
	// server already sent, and refusing it would have the server send the
	// message again at the next login.
	_, err := s.queue(&b, qopts{typ: wire.TypeACK, force: true})
	return err
}

// The blocking wrappers: each sends its request like the Send methods and
// waits for its outcome, which is returned (a failure ACK as an *AckError)
// instead of being delivered as a ReplyEvent. They block until the outcome,
// ctx's end or the session's end (an error matching ErrClosed), and must not
// be called from the Handler: the outcome is read by the reader goroutine
// the Handler runs on. They exist for tests and simple tools; the gateway
// uses the Send methods.

// waiter receives the outcome of one request. The channel has room for the
// one result ever sent, so the sender never blocks.
type waiter struct {
	ch chan ackResult
}

type ackResult struct {
	code wire.Code
	err  error
}

func newWaiter() *waiter { return &waiter{ch: make(chan ackResult, 1)} }

func (w *waiter) deliver(r ackResult) {
	select {
	case w.ch <- r:
	default:
	}
}

// await waits for the outcome of the request typ sent as id.
func await(ctx context.Context, w *waiter, typ string, id uint64, err error) error {
	if err != nil {
		return err
	}
	select {
	case r := <-w.ch:
		if r.err != nil {
			return r.err
		}
		if !r.code.OK() {
			return &AckError{Code: r.code}
		}
		return nil
	case <-ctx.Done():
		// The request stays outstanding; its outcome is dropped.
		return fmt.Errorf("imipside: waiting for the ACK to %s %d: %w", typ, id, ctx.Err())
	}
}

// SetStatus is SendStatus, waiting for the outcome.
func (s *Session) SetStatus(ctx context.Context, st wire.Status, text string) error {
	w := newWaiter()
	id, err := s.sendStatus(st, text, w)
	return await(ctx, w, wire.TypeSTAT, id, err)
}

// ListAdd is SendListAdd, waiting for the outcome.
func (s *Session) ListAdd(ctx context.Context, n wire.Number, text string) error {
	w := newWaiter()
	id, err := s.sendList(opListAdd, n, "", text, w)
	return await(ctx, w, RequestListAdd, id, err)
}

// ListAccept is SendListAccept, waiting for the outcome.
func (s *Session) ListAccept(ctx context.Context, n wire.Number, nick string) error {
	w := newWaiter()
	id, err := s.sendList(opListAccept, n, nick, "", w)
	return await(ctx, w, RequestListAccept, id, err)
}

// ListRemove is SendListRemove, waiting for the outcome.
func (s *Session) ListRemove(ctx context.Context, n wire.Number) error {
	w := newWaiter()
	id, err := s.sendList(opListRemove, n, "", "", w)
	return await(ctx, w, RequestListRemove, id, err)
}

// Ping sends PING and waits for its outcome: the ACK, or a reply to a later
// block.
func (s *Session) Ping(ctx context.Context) error {
	w := newWaiter()
	b := wire.Block{Type: wire.TypePING, Headers: []wire.Header{idHeader()}}
	id, err := s.queue(&b, qopts{typ: wire.TypePING, op: opPING, w: w})
	return await(ctx, w, wire.TypePING, id, err)
}
