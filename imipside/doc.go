// Package imipside is one user's IMIP/1.0 client session: it logs in (HELO,
// salt, LOGN with the MD5 digest), numbers its blocks from 1001, matches the
// server's replies to requests by their Reference header, keeps the
// connection alive with PING, and turns blocks the server pushes (STAT, MESG,
// LIST) into typed events.
//
// # Goroutines
//
// Dial runs the handshake on the caller's goroutine. After login a session
// has exactly one goroutine, its reader: it reads blocks with wire.Reader,
// wakes the request that a reply references, and calls the Handler with
// events. Writes happen on the caller's goroutine under a mutex, each block
// in one Write, with a write deadline from the caller's ctx (at most
// DefaultWriteTimeout). Keep-alive is a runtime timer (time.AfterFunc)
// re-armed after every block written: an idle session has no goroutine
// besides its reader, which is parked in a read. When the timer fires it
// sends a PING; if that PING has no ACK within the keep-alive interval the
// session ends with ErrTimeout.
//
// Close and Disconnect wait for the reader goroutine to exit; after them no
// goroutine or timer of the session remains. Every session ends with one
// ClosedEvent, the last event its Handler sees.
//
// # Replies
//
// Requests that wait (SetStatus, ListAdd, ListAccept, ListRemove, Ping,
// Disconnect) park on a one-slot channel registered under the block's ID; a
// 6xx ACK is success and an 8xx ACK is an *AckError. Their ACKs are all seen
// on the wire or stated in the write-up. SendMessage (ACK-Type errors-only)
// and ListReject (whose ACK is only this project's rule, so a server may
// never send it) do not wait: the block's ID is remembered until a reply to a
// later block confirms it (the server answers in order), and an 8xx ACK that
// references it arrives as a MessageFailedEvent or a RequestFailedEvent.
//
// # Tolerance
//
// The session accepts blocks without the empty line, headers in any order
// and case, several blocks in one read, Time for Timo, and a HELO without
// Keep-Alive (60 s). Blocks of unknown type, and pushed blocks it cannot
// decode, are logged and ignored (at warn level for a MESG or LIST, a lost
// message or request; at debug level otherwise); a block the wire codec
// rejects ends the session. A Buddy header that does not parse costs only
// its malformed entries (logged at warn), never the login. Passwords and the LOGN digest never appear in
// logs, errors or the trace.
package imipside
