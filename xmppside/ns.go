package xmppside

// Namespaces used on the wire.
const (
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
	nsRegister   = "jabber:iq:register"
	nsGateway    = "jabber:iq:gateway"
	nsVersion    = "jabber:iq:version"
	nsPing       = "urn:xmpp:ping"
	nsNick       = "http://jabber.org/protocol/nick"
	nsDelay      = "urn:xmpp:delay"
	nsLegacyDel  = "jabber:x:delay"
	nsData       = "jabber:x:data"
	nsReceipts   = "urn:xmpp:receipts"
	nsChatStates = "http://jabber.org/protocol/chatstates"
	nsCaps       = "http://jabber.org/protocol/caps"
	nsRoster     = "jabber:iq:roster"
	nsRosterX    = "http://jabber.org/protocol/rosterx"
	nsStanzaErr  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsXML        = "http://www.w3.org/XML/1998/namespace"

	// NSPrivilege2 is XEP-0356 version 2 (Prosody's mod_privilege).
	NSPrivilege2 = "urn:xmpp:privilege:2"
	// NSPrivilege1 is XEP-0356 version 1 (ejabberd 23.01).
	NSPrivilege1 = "urn:xmpp:privilege:1"
)
