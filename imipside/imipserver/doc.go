// Package imipserver is a reference IMIP/1.0 server (see docs/PROTOCOL.md): login
// with the imip-md5 challenge, presence, messages (held for offline users),
// and one-directional contact lists with pending requests.
//
// # Goroutines
//
// Each connection has a reader goroutine that reads and handles its blocks
// while the client talks; after Config.ParkAfter (1 s) without a block it
// parks: it drops its read buffers and waits on the process's poller
// (internal/netpoll, one epoll instance), which starts a new reader when
// the client sends again, so an idle user costs no goroutine. The
// keep-alive and login deadlines of parked connections are kept by one
// janitor goroutine, which looks once a second. Writes go through a
// per-connection queue bounded by Config.OutQueueBytes; a writer goroutine
// runs only while that queue is not empty. Handlers never block on another client's
// socket: a client whose queue overflows, or that does not read for
// Config.WriteTimeout, is disconnected (live pushes stop at half the queue
// and go to the Store instead, so only a client that does not read at all
// gets there). A client that sends nothing for
// 2 × KeepAlive is disconnected. Malformed input is answered with ACK 813
// and the connection is closed; other users are unaffected.
//
// Server.mu orders logins, presence and list changes; store calls whose
// order matters (lists, fan-out) are made under it. Messages are stored
// outside it, so that concurrent senders share SQLite commits: a sender
// looks the recipient up after its message is durable, and a login
// publishes its connection before it first reads the Store, so one of the
// two always finds the message.
//
// Stored messages reach a connection through its deliver loop, run by
// whichever goroutine has news for it (the login, a sender that stored a
// message, the reader after confirms, the writer after writes), one at a
// time per connection, and never while holding Server.mu. SQLiteStore
// adds one goroutine of its own, which group-commits message writes.
//
// # Behaviour where docs/PROTOCOL.md leaves room
//
//   - Server blocks are Odigo style: headers sorted alphabetically, no
//     empty line on a block without a body. IDs come from one counter
//     shared by all connections, starting at 10000.
//   - A login makes the user ONLINE, and its contacts see STAT ONLINE. The
//     user then receives the STAT of every visible online contact on its
//     list [ours], its pending contact requests (again at every login until
//     answered), and the messages held for it with their original Timo,
//     oldest first. Without mesg-ack a held message is deleted once written
//     to the socket; with it, once confirmed (see below).
//   - Held messages are flow-controlled [ours]: at most
//     Config.DeliveryWindow (default 32) are pushed to a connection and
//     not yet confirmed (with mesg-ack: by the client's ACK 600; without:
//     by being written to the socket), and no further one is pushed while
//     the unconfirmed ones hold half of Config.OutQueueBytes or more (one
//     always goes). The others stay in the Store and follow, in order, as
//     earlier ones are confirmed; a live message to a connection without
//     mesg-ack that still has held messages waiting is stored behind them.
//     A backlog therefore never overflows the outbound queue.
//   - A second login of the same number closes the older connection; the
//     newest wins, and contacts see no OFFLINE in between.
//   - STAT OFFLINE from a logged-in user makes it invisible: watchers see
//     STAT OFFLINE, messages still reach it. A presence that others would
//     see unchanged is not fanned out again.
//   - MESG to an unknown or malformed number: ACK 811 (a recipient is not
//     a secret: lists show numbers). With
//     `ACK-Type: errors-only` success is silent, otherwise ACK 600, sent
//     only once the message is durably stored (recipient offline, or online
//     with mesg-ack) or written to the recipient's socket (recipient online
//     without mesg-ack and nothing held for it). Such a live message that
//     its recipient's connection drops before writing it is lost, and its
//     sender gets no ACK 600: plain IMIP delivery is best effort. The From
//     header of client blocks is ignored: the sender is the logged-in user.
//     A message that could exceed Limits.MaxSize once the server's headers
//     are added gets ACK 813 (the connection stays); the headers are
//     counted at their longest (a nick of MaxNickLen bytes, the longest
//     block ID and Message-ID), so a message accepted can always be pushed.
//     If the store fails, the connection is closed without an ACK.
//   - A connection handles its blocks in order and waits for each MESG to
//     be stored before reading the next block: one connection's messages
//     are committed one by one, and only messages from different
//     connections share a commit.
//   - LIST ADD to oneself or an unknown number: ACK 811. LIST ADD of a
//     number already on the list: ACK 600 and its current STAT again.
//     LIST ACCEPT without a pending request: ACK 812 (ACK 600 if the
//     requester's list already holds the accepter). LIST REJECT without a
//     pending request: ACK 600, nothing sent. LIST REMOVE only changes the
//     remover's own list (and withdraws its pending request); the removed
//     contact, if online, gets S LIST REMOVE. S LIST REJECT and
//     S LIST REMOVE go only to users online at that moment; they are not
//     held for offline users.
//   - Abuse limits [ours] (Config.Abuse, AbuseLimits; every one
//     configurable): a sender may have at most MaxHeldPerSender (200)
//     messages stored for one recipient, a recipient MaxHeldPerRecipient
//     (2000) in all, a user MaxRequestsPerRecipient (100) pending contact
//     requests; beyond, ACK 814. A connection may send SendRate (50/s,
//     burst 500) MESG and LIST ADD blocks; beyond, ACK 815. A live message
//     to a connection whose queue is half full is stored and follows
//     through the delivery window, and a contact request is pushed only
//     while the queue has room (else at the next login), so no sender can
//     overflow another user's queue. A repeated LIST ADD while its request
//     is pending is answered ACK 600 and not pushed again; request texts
//     are cut to MaxRequestText (1 KiB). At most MaxConns (50000)
//     connections, MaxPending (1024) not logged in, MaxPendingPerAddr
//     (64) not logged in from one IP; beyond, a new connection is closed
//     at once. A connection that has not logged in within LoginTimeout
//     (30 s) of its accept is closed, whatever it sends. Refused logins
//     are limited per IP (20, then one a second) and per number (10, then
//     one per 6 s), the number's budget not counting the address it last
//     logged in from, so a stranger cannot lock the owner out; beyond a
//     budget a login is answered ACK 810 unchecked. An unknown number is
//     answered ACK 810 like a wrong password, after the same digest check.
//     Accept errors (too many open files) do not stop the server: it
//     backs off (5 ms doubling to 1 s) and keeps accepting.
//   - Client ACK blocks are ignored, except mesg-ack confirms; HELO or
//     LOGN after login and unknown block types get ACK 812; LOGN before
//     HELO gets ACK 812.
//
// # The mesg-ack extension [ours]
//
// This project's own extension, used only when both sides announce it, so
// that a real Odigo-style server or client never sees it: confirmed
// delivery of the MESG blocks the server pushes.
//
//   - The HELO reply's Capabilities header lists the token mesg-ack
//     (`Capabilities: server-lists,mesg-ack`; Faults.NoMesgAck leaves it
//     out). A client that saw it may send `Capabilities: mesg-ack` in its
//     LOGN; tokens are comma separated, matched case-insensitively, with
//     spaces around them ignored, and unknown tokens are ignored. A LOGN
//     Capabilities header without the token, or from a client the HELO did
//     not offer it to, changes nothing.
//   - With both announced, every MESG pushed to that connection carries a
//     Message-ID, stable across redeliveries: `m<Store ID>` for a message
//     stored before its push (SQLite row IDs are never reused), or a key
//     made at the push (`h<server nonce>-<counter>`) for one pushed before
//     it was stored (Config.HoldWrites), kept in the Store if it is stored
//     later.
//   - The client confirms a pushed MESG with
//     `ACK 600` + `Reference: <the MESG block's ID>`, in any order. The
//     server never answers a client ACK. An ACK whose Reference is no
//     unconfirmed MESG pushed on this connection, and an ACK with another
//     code, are ignored. A confirmed message is deleted from the Store;
//     confirms that arrive together (up to 64) share one delete. A confirm
//     read when the connection ends is still applied.
//   - Unconfirmed messages stay stored whatever ends the connection (DISC,
//     a drop, a cut in the middle of a block, a kill, a newer login, a
//     server restart on the same SQLite file) and are pushed again, oldest
//     first, at the user's next login, with their original Timo and
//     Message-ID and a new block ID. A confirm lost with the connection
//     therefore means the message comes again: clients drop repeats by
//     Message-ID.
//   - A live message to a mesg-ack client, when nothing stored waits for
//     it and its window has room, is pushed at once and counts as
//     delivered for its sender (ACK 600) once the client confirmed it, or,
//     not confirmed within Config.HoldWrites (50 ms) or when the
//     connection ends first, once stored (the confirmation then deletes
//     it). Held messages are stored in the order they were pushed, and
//     before any message stored for the same user after them. Otherwise
//     (HoldWrites negative, or stored messages waiting) it is stored
//     first, and ACK 600 follows the write. A sender's answers keep the
//     order of its blocks: those after a held message's wait behind its
//     ACK, while the sender's blocks are still read.
//
// The server needs the passwords themselves, not hashes: the imip-md5
// challenge hashes a fresh salt with the password. SQLiteStore seals them
// under a key file (see SQLiteOptions); MemStore keeps them in memory.
package imipserver
