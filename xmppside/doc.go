// Package xmppside is the XMPP half of imip-transport: an XEP-0114 external
// component built on mellium.im/xmpp.
//
// It knows nothing about IMIP.
// Incoming stanzas are turned into plain Go values ([Presence], [Message])
// and handed to a [Handler]; the gateway sends plain Go values back with
// [Component.SendPresence] and [Component.SendMessage].
//
// The component answers on its own the IQs that need no IMIP knowledge:
// service discovery (a gateway identity for the component domain, a client
// identity for contacts), XEP-0092 version, XEP-0199 ping and the XEP-0100
// prompt (through [Gateway]).
// XEP-0077 registration is decoded here and delegated to a [Registrar] in its
// own goroutine.
// XEP-0050 ad-hoc commands are spoken here (the command list in disco, the
// <command/> IQs, sessions bounded in number and age, actions, notes and
// XEP-0004 data forms) when the Handler is also a [Commander], which
// decides who may run what and runs each stage in its own goroutine.
// Every IQ of type get or set gets an answer, a result or an error.
//
// vCard requests (XEP-0054, and XEP-0292 vCard4 and the XEP-0172 nickname as
// PEP items) are answered from a [Card] that the Handler gives when it is a
// [CardProvider]: at once when it has it at hand, else in a goroutine of
// their own; a [ServiceNamer] names the component in disco#info.
//
// Nothing the component writes may be larger than [Config.MaxStanzaSize]
// (default [DefaultMaxStanzaSize]) as encoded on the wire: a server closes
// the component stream, and so cuts off every user, when one stanza
// exceeds its own limit (Prosody 0.12: 512 KiB). Each stanza is measured
// before it is written, by a cheap upper bound and, only when that bound
// is above the limit, exactly. A message with a body too large is sent as
// several messages ([Component.SendMessage]); a roster item exchange with
// too many items as several exchanges ([Component.SendRosterExchange]); an
// IQ answer too large becomes internal-server-error; any other stanza too
// large is not sent and its method returns [ErrStanzaTooLarge]. The link
// stays up in every case.
//
// [Component.Run] owns the connection: it dials, performs the handshake,
// serves, and reconnects forever with exponential backoff and jitter until
// its context ends.
//
// Goroutines: Run's goroutine dials and calls HandleConnected; one goroutine
// per link runs mellium's read loop (HandlePresence, HandleMessage and the
// privilege notification are called on it and must not block); each
// registration IQ and each command stage runs in a short-lived goroutine
// bounded per link.
// Run waits for all of them before it returns.
//
// The component also acts as a client towards the server and users:
// [Component.SendIQ], [Component.DiscoFeatures], XEP-0356 privileged roster
// access ([Component.RosterGet], [Component.RosterSet]) and XEP-0144 roster
// item exchange ([Component.SendRosterExchange]).
// None of these may be called from inside a Handler method that runs on the
// read loop: they wait for a reply that the read loop would have to deliver.
package xmppside
