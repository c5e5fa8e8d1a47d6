// Package imipside is one user's IMIP/1.0 client session: it logs in (HELO,
// salt, LOGN with the MD5 digest), numbers its blocks from 1001, settles its
// requests with the server's replies, keeps the connection alive with PING,
// and turns blocks the server pushes (STAT, MESG, LIST) into typed events.
//
// After login no method waits on the network or on the server: a request is
// queued and its ID returned at once; its outcome comes later as an event.
//
// # Goroutines
//
// Dial runs the handshake on the caller's goroutine, writing and reading
// the connection directly. After login a session has:
//
//   - one reader goroutine, for its whole life: it reads blocks with
//     wire.Reader, settles requests and calls the Handler with events;
//   - one writer goroutine, only while the outgoing queue holds bytes: it is
//     started when a block is queued into an empty queue and exits when the
//     queue is empty again;
//   - runtime timers (time.AfterFunc), which are no goroutine while they
//     wait: the keep-alive, the confirmation barrier, the logout bound.
//
// An idle session is its reader parked in a read, and a timer. Every session
// ends with one ClosedEvent, the last event its Handler sees; Done is closed
// after it, when no goroutine or timer callback of the session remains.
//
// # Requests and replies
//
// SendStatus, SendMessage, SendListAdd, SendListAccept, SendListReject and
// SendListRemove check their block (an invalid one is refused before it
// takes an ID), number it, encode it into the outgoing queue and return its
// ID. Each such request gets exactly one ReplyEvent with that ID: the
// server's ACK that references it (6xx success, 8xx failure), or, when the
// server answers a later block first, an implicit success (Implicit true,
// Code 600). The server answers in order, so a reply to block N settles
// every request before N: that is how requests whose ACK a server may never
// send (an Odigo server and MESG, LIST REJECT whose ACK is this project's own
// rule) still get an outcome. A request that has no ReplyEvent when the
// session ends failed: the ClosedEvent says so for all of them; no
// ReplyEvent follows it.
//
// The session keeps no timer per request: its user times requests out
// itself. At most Config.MaxOutstanding requests (default 1024) wait for an
// outcome; beyond that a Send method returns ErrBusy. The blocking wrappers
// (SetStatus, ListAdd, ListAccept, ListRemove, Ping, Disconnect) send the
// same requests and wait for their outcome, which they return instead of a
// ReplyEvent; they exist for tests and tools.
//
// # The confirmation barrier
//
// When requests wait for their outcome and no reply has been read from the
// server for Config.ConfirmInterval (default 2 s), the session queues a
// PING: its ACK settles every earlier request. One PING after the newest
// waiting request is enough; the next request re-arms the barrier. The
// barrier is a runtime timer armed only while requests wait.
//
// # The outgoing queue
//
// Blocks are encoded into a per-session byte queue of at most
// Config.MaxQueue bytes (default 256 KiB, the write in progress included;
// a block always fits an empty queue). A block that does not fit is refused
// with ErrBusy and nothing is queued. The writer goroutine hands everything
// queued to one Write (blocks queued while a write is in progress go out
// together in the next). A write that fails, or does not complete within
// Config.WriteTimeout (default 30 s), ends the session with that error.
// Queue buffers come from a pool shared by all sessions (which the garbage
// collector empties); an idle session holds none, and a buffer grown above
// 256 KiB is dropped.
//
// # Keep-alive
//
// After KeepAlive (the server HELO's Keep-Alive, 60 s without one) without a
// block written, the session sends a PING. The barrier's PING serves as well.
// When that PING has no ACK KeepAlive later, nothing else was read from the
// server meanwhile and the Handler did not hold the reader at any time
// since the PING, the connection is dead and the session ends with
// ErrTimeout.
//
// # The Handler
//
// The Handler is called on the reader goroutine, one event at a time, in
// wire order, and may block: while it does, nothing is read from the
// server, which is TCP back-pressure for this one user. It may call every
// non-blocking method (the Send methods, ConfirmMessage, Logout, Kill) and
// Close, never a blocking wrapper: their outcome is read by the goroutine
// the Handler is holding.
//
// # Ending
//
// Logout queues DISC and returns; the session ends by itself, with a nil
// Err, when the server ACKs the DISC or closes the connection, and
// Config.LogoutTimeout (default 5 s) after Logout at the latest. Kill closes
// the connection at once and never waits, even while the Handler is
// blocked; the ClosedEvent (Err nil) follows when the Handler returns. Close
// is Kill, then waiting for Done, unless the Handler is running at that
// moment (so that the Handler may call it). Any other
// end (the server closing, a read or write error, a malformed block, a dead
// keep-alive) carries its cause in ClosedEvent.Err and Err.
//
// # Confirmed delivery: mesg-ack (this project's own rule)
//
// mesg-ack is an extension of this project, not of IMIP, used only when both
// sides announce it, so that an Odigo-style peer never sees it. When the server's HELO lists
// the token mesg-ack in its Capabilities header, the client's LOGN carries
// `Capabilities: mesg-ack` and ConfirmsMessages reports true. The server
// then keeps every MESG it pushes until the client confirms it, pushes the
// unconfirmed ones again at the next login with the same Message-ID, and
// gives each MESG a `Message-ID` header (MessageEvent.MessageID). The user
// of the session confirms a message, once it is safely stored, with
// ConfirmMessage(MessageEvent.BlockID), which queues
//
//	ACK 600 / ID: <next client ID> / Reference: <the MESG's block ID>
//
// and gets no reply. Against a server that did not offer mesg-ack nothing
// of this is sent, and delivery is best effort.
//
// # Tolerance
//
// The session accepts blocks without the empty line, headers in any order
// and case, several blocks in one read, Time for Timo, and a HELO without
// Keep-Alive (60 s). Blocks of unknown type, and pushed blocks it cannot
// decode, are logged and ignored (at warn level for a MESG or LIST, a lost
// message or request; at debug level otherwise); a reply that references
// no block sent is ignored; a block the wire codec rejects, and an ACK
// whose code is not three digits, end the session with an error matching
// ErrProtocol (and, for the codec, the *wire.Error). A Buddy header that does not parse costs only its malformed
// entries (logged at warn), never the login. Passwords and the LOGN digest
// never appear in logs, errors or the trace.
package imipside
