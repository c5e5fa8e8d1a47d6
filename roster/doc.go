// Package roster holds one user's IMIP contact list and the subscription state
// machine that keeps it in step with the user's XMPP roster.
//
// The package is pure data and transitions: it does no I/O, starts no
// goroutines and never blocks.
// The gateway feeds it events from both networks ([List.Apply]) and carries
// out the actions it returns, in order: IMIP blocks to send, presence stanzas
// to deliver to the user, roster pushes, and [Persist] to save the list.
// At login, [Sync] reconciles the stored list with the server's Buddy list.
//
// IMIP contact lists are one-directional, like XMPP subscriptions:
// a contact on the user's IMIP list (InList) is a contact whose presence the
// user receives, that is an XMPP subscription from the user to
// number@gateway.
// A request the user made and the contact has not answered is PendingOut;
// a request the contact made to the user and the user has not answered is
// PendingIn.
//
// The one place where IMIP numbers and XMPP addresses are mapped is [JID] and
// [Number].
package roster
