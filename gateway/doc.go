// Package gateway is where XMPP and IMIP meet: the registry of users, one
// owner per user's state, and the translation tables between the two
// networks.
//
// The package declares what it consumes: an XMPP sender ([XMPP]), an IMIP
// dialer ([Dialer] returning an [IMIPSession]) and a [Store]. The component
// (package xmppside) calls [Gateway] as its Handler; IMIP sessions call it
// through a per-session adapter. Neither side imports the other.
//
// # Ownership
//
// Each registered user has one *user value. Everything about that user (its
// XMPP resources, its IMIP session, its contacts' presence, its roster state)
// is read and written only by the user's run loop, which is reached only
// through the user's bounded inbox. A run loop goroutine exists only while the
// inbox holds work: an idle user costs no goroutine. The component's read
// loop never waits on a user: a full inbox answers the stanza with a
// resource-constraint error. An IMIP session's reader goroutine does wait on
// a full inbox, which slows only that user's own TCP connection.
//
// # Ad-hoc commands
//
// [Gateway] is also an xmppside.Commander: the users' XEP-0050 commands
// (register, status, reconnect, sync, settings, password, unregister) and
// the administrators' ([Config.Admins]; XEP-0133 node names where one
// fits). Registration commands reuse [Gateway.Register] and
// [Gateway.Unregister]; a command on a user is an event of that user's run
// loop, answered on a channel.
package gateway
