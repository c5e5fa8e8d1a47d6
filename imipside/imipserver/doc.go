// Package imipserver is a reference IMIP/1.0 server (see IMIP.md): login
// with the imip-md5 challenge, presence, messages (held for offline users),
// and one-directional contact lists with pending requests.
//
// # Goroutines
//
// Each connection has a reader goroutine that reads and handles its blocks.
// Writes go through a per-connection queue bounded by Config.OutQueueBytes;
// a writer goroutine runs only while that queue is not empty, so an idle
// user costs one goroutine. Handlers never block on another client's
// socket: a client whose queue overflows, or that does not read for
// Config.WriteTimeout, is disconnected. A client that sends nothing for
// 2 × KeepAlive is disconnected. Malformed input is answered with ACK 813
// and the connection is closed; other users are unaffected.
//
// Server.mu orders logins, presence and message routing; store calls whose
// order matters (held messages, lists, fan-out) are made under it.
//
// # Behaviour where IMIP.md leaves room
//
//   - Server blocks are Odigo style: headers sorted alphabetically, no
//     empty line on a block without a body. IDs come from one counter
//     shared by all connections, starting at 10000.
//   - A login makes the user ONLINE, and its contacts see STAT ONLINE. The
//     user then receives the STAT of every visible online contact on its
//     list [ours], its pending contact requests (again at every login until
//     answered), and the messages held for it with their original Timo;
//     a held message is deleted only once written to the socket.
//   - A second login of the same number closes the older connection; the
//     newest wins, and contacts see no OFFLINE in between.
//   - STAT OFFLINE from a logged-in user makes it invisible: watchers see
//     STAT OFFLINE, messages still reach it. A presence that others would
//     see unchanged is not fanned out again.
//   - MESG to an unknown or malformed number: ACK 811. With
//     `ACK-Type: errors-only` success is silent, otherwise ACK 600. The
//     From header of client blocks is ignored: the sender is the
//     logged-in user. A message that would exceed Limits.MaxSize once the
//     server's headers are added gets ACK 813 (the connection stays). If the
//     store fails, the connection is closed without an ACK.
//   - LIST ADD to oneself or an unknown number: ACK 811. LIST ADD of a
//     number already on the list: ACK 600 and its current STAT again.
//     LIST ACCEPT without a pending request: ACK 812 (ACK 600 if the
//     requester's list already holds the accepter). LIST REJECT without a
//     pending request: ACK 600, nothing sent. LIST REMOVE only changes the
//     remover's own list (and withdraws its pending request); the removed
//     contact, if online, gets S LIST REMOVE. S LIST REJECT and
//     S LIST REMOVE go only to users online at that moment; they are not
//     held for offline users.
//   - Client ACK blocks are ignored; HELO or LOGN after login and unknown
//     block types get ACK 812; LOGN before HELO gets ACK 812.
//
// Passwords are stored as plain text: the imip-md5 challenge needs them.
package imipserver
