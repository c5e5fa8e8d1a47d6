package hostile

import (
	"context"
	"fmt"
	"strings"

	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
)

const (
	carolJID = "4004004@" + domain
	// ns binds c to the stream's namespace and f to a foreign one, for
	// the impersonation cases.
	ns = `xmlns:c="jabber:component:accept" xmlns:f="urn:evil"`
)

// moreCases are the cases of the second pass: every address slot, every
// attribute namespace trick, foreign namespaces, more sizes, every IQ
// shape, registration fields, presence to and from strangers, roster and
// privilege forgeries, receipts, and the characters XML lets through.
func moreCases() []hcase {
	msg := func(from, to, attrs, inner string) string {
		return fmt.Sprintf(`<message id="{id}" from=%q to=%q%s>%s</message>`, from, to, attrs, inner)
	}
	pres := func(from, to, attrs, inner string) string {
		return fmt.Sprintf(`<presence id="{id}" from=%q to=%q%s>%s</presence>`, from, to, attrs, inner)
	}
	iq := func(from, to, typ, inner string) string {
		return fmt.Sprintf(`<iq id="{id}" type=%q from=%q to=%q>%s</iq>`, typ, from, to, inner)
	}
	chat := func(from, to, body string) string { return msg(from, to, ` type="chat"`, "<body>"+body+"</body>") }
	eveSays := func(text string) func(r *rig, id string, mark int) {
		return func(r *rig, id string, mark int) { bobGetsFrom(r, acctEve.Number, text) }
	}
	long := strings.Repeat("r", 1100) // beyond a JID part's 1023 bytes
	return []hcase{
		// Addresses, each slot.
		{name: "message to a malformed JID", raw: chat(eve, "@@", "to-malformed"), want: "none", check: bobGetsNone("to-malformed")},
		{name: "message to a contact with an empty resource", raw: chat(eve, bobJID+"/", "empty-res"), want: "none", check: bobGetsNone("empty-res")},
		{name: "message to a contact with a 1,100-byte resource", raw: chat(eve, bobJID+"/"+long, "long-res"), want: "none", check: bobGetsNone("long-res")},
		{name: "message from a 1,100-byte localpart", raw: chat(long+"@localhost/m", bobJID, "long-local"), want: "none", check: bobGetsNone("long-local")},
		{name: "message from a localpart with a space", raw: chat("mal lory@localhost/m", bobJID, "space-local"), want: "none", check: bobGetsNone("space-local")},
		{name: "message with an empty from", raw: chat("", bobJID, "empty-from"), want: "none", check: bobGetsNone("empty-from")},
		{name: "message to a number at another domain", raw: chat(eve, string(acctBob.Number)+"@evil.example", "other-domain"), want: "error:jid-malformed", check: bobGetsNone("other-domain")},
		{name: "message to a number with a plus sign", raw: chat(eve, "+"+bobJID, "plus"), want: "error:jid-malformed", check: bobGetsNone("plus")},
		{name: "message to the gateway in capitals reaches the contact", raw: chat(eve, string(acctBob.Number)+"@"+strings.ToUpper(domain), "caps-domain"), want: "none", check: eveSays("caps-domain")},
		{name: "message to a number in fullwidth digits (refused by the bidi rule: dropped)", raw: chat(eve, "２００２００２@"+domain, "fullwidth"), want: "none", check: bobGetsNone("fullwidth")},
		{name: "presence from a malformed JID", raw: pres("a@b@c", domain, ` type="unavailable"`, ""), want: "none"},
		{name: "probe from a stranger to a contact with a 1,100-byte resource", raw: pres(mal, bobJID+"/"+long, ` type="probe"`, ""), want: "none", check: noContactPresenceTo("mallory@")},
		{name: "iq to a malformed JID", raw: iq(eve, "@@", "get", `<ping xmlns="urn:xmpp:ping"/>`), want: "error:jid-malformed"},
		{name: "iq to another domain", raw: iq(eve, "evil.example", "get", `<ping xmlns="urn:xmpp:ping"/>`), want: "error:service-unavailable"},
		{name: "iq with an empty from", raw: iq("", domain, "get", `<ping xmlns="urn:xmpp:ping"/>`), want: "none"},
		{name: "iq to a contact with a 1,100-byte resource", raw: iq(eve, bobJID+"/"+long, "get", `<ping xmlns="urn:xmpp:ping"/>`), want: "error:jid-malformed"},

		// Attributes in a namespace are not the stanza's.
		{name: "unavailable with only a stream-namespace from (as alice)", raw: `<presence ` + ns + ` c:from="alice@localhost/r" id="{id}" to="` + domain + `" type="unavailable"/>`, want: "none", check: stillOnline(acctAlice)},
		{name: "stream-namespace type unavailable on eve's presence", raw: `<presence ` + ns + ` from="` + eve + `" id="{id}" to="` + domain + `" c:type="unavailable"/>`, want: "none", check: eveStillOnline},
		{name: "unregistration with only a stream-namespace from (as alice)", raw: `<iq ` + ns + ` c:from="alice@localhost/r" id="{id}" type="set" to="` + domain + `"><query xmlns="jabber:iq:register"><remove/></query></iq>`, want: "none"},
		{name: "stream-namespace to before the real one", raw: `<message ` + ns + ` from="` + eve + `" c:to="` + string(acctAlice.Number) + `@` + domain + `" to="` + bobJID + `" id="{id}" type="chat"><body>c-to</body></message>`, want: "none", check: eveSays("c-to")},
		{name: "stream-namespace type error before type chat", raw: `<message ` + ns + ` from="` + eve + `" to="` + bobJID + `" c:type="error" f:type="error" id="{id}" type="chat"><body>c-type</body></message>`, want: "none", check: eveSays("c-type")},
		{name: "from with an undeclared prefix", raw: `<message x:from="alice@localhost/r" from="` + eve + `" to="` + bobJID + `" id="{id}" type="chat"><body>x-from</body></message>`, want: "none", check: eveSays("x-from")},
		{name: "stream-namespace type result on a ping", raw: `<iq ` + ns + ` c:type="result" type="get" from="` + eve + `" to="` + domain + `" id="{id}"><ping xmlns="urn:xmpp:ping"/></iq>`, want: "result"},
		{name: "stream-namespace id: the error carries the real one", raw: `<message ` + ns + ` c:id="forged" id="{id}" from="` + mal + `" to="` + bobJID + `" type="chat"><body>c-id</body></message>`, want: "error:registration-required"},

		// Namespaces of the stanzas and their children.
		{name: "message in jabber:client", raw: `<message xmlns="jabber:client" id="{id}" from="` + eve + `" to="` + bobJID + `" type="chat"><body>client-ns</body></message>`, want: "none", check: bobGetsNone("client-ns")},
		{name: "unavailable in a foreign namespace", raw: `<presence xmlns="urn:evil" id="{id}" from="` + eve + `" to="` + domain + `" type="unavailable"/>`, want: "none", check: eveStillOnline},
		{name: "iq in jabber:server (ignored by the component, answered by mellium)", raw: `<iq xmlns="jabber:server" id="{id}" type="get" from="` + eve + `" to="` + domain + `"><ping xmlns="urn:xmpp:ping"/></iq>`, want: "error:service-unavailable"},
		{name: "message with the stream namespace by a prefix is a message", raw: `<c:message xmlns:c="jabber:component:accept" id="{id}" from="` + eve + `" to="` + bobJID + `" type="chat"><c:body>prefixed</c:body></c:message>`, want: "none", check: eveSays("prefixed")},
		{name: "a body in a foreign namespace beside the real one", raw: msg(eve, bobJID, ` type="chat"`, `<body xmlns="urn:evil">evil-body</body><body>real-body</body>`), want: "none", check: eveSays("real-body")},
		{name: "only a body in a foreign namespace", raw: msg(eve, bobJID, ` type="chat"`, `<body xmlns="urn:evil">only-evil</body>`), want: "none", check: bobGetsNone("only-evil")},
		{name: "a 100 KB status in a foreign namespace", raw: pres(eve, domain, "", `<status xmlns="urn:evil">{huge:100000}</status>`), want: "none", check: eveStillOnline},
		{name: "ping in a look-alike namespace", raw: iq(eve, domain, "get", `<ping xmlns="urn:xmpp:ping:2"/>`), want: "error:service-unavailable"},

		// Sizes and shapes.
		{name: "a subject of 100 KB", raw: msg(eve, bobJID, ` type="chat"`, `<subject>{huge:100000}</subject><body>big-subject</body>`), want: "none", check: eveSays("big-subject")},
		{name: "a thread of 100 KB", raw: msg(eve, bobJID, ` type="chat"`, `<thread>{huge:100000}</thread><body>big-thread</body>`), want: "none", check: eveSays("big-thread")},
		{name: "a subscription request with a 100 KB status", raw: pres(eve, carolJID, ` type="subscribe"`, `<status>{huge:100000}</status>`), want: "none", check: carolAsked},
		{name: "5,000 attributes", raw: `<message id="{id}" from="` + eve + `" to="` + bobJID + `" type="chat"` + manyAttrs(5000) + `><body>many-attrs</body></message>`, want: "none", check: eveSays("many-attrs")},
		{name: "a presence with 10,000 children", raw: pres(eve, domain, "", strings.Repeat(`<x xmlns="urn:x"/>`, 10000)), want: "none", check: eveStillOnline},
		{name: "a registration nested 10,000 deep", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:register"><username>1</username>{nest:10000}</query>`), want: "error:not-acceptable"},
		{name: "100 KB of three-byte characters, bounce short", raw: chat(eve, bobJID, strings.Repeat("€", 35000)), want: "error:not-acceptable", check: smallBounce},
		{name: "60,000 escaped characters fit IMIP", raw: chat(eve, bobJID, strings.Repeat("&lt;", 60000)), want: "none", check: eveSays(strings.Repeat("<", 60000))},

		// Types.
		{name: "message of an unknown type is normal", raw: msg(eve, bobJID, ` type="weird"`, `<body>weird-type</body>`), want: "none", check: eveSays("weird-type")},
		{name: "error message to the gateway", raw: msg(eve, domain, ` type="error"`, `<error type="cancel"><gone xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`), want: "none"},
		{name: "error presence to a contact", raw: pres(eve, bobJID, ` type="error"`, `<error type="cancel"><gone xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`), want: "none", check: eveStillOnline},
		{name: "iq without a type", raw: `<iq id="{id}" from="` + eve + `" to="` + domain + `"><ping xmlns="urn:xmpp:ping"/></iq>`, want: "error:bad-request"},

		// IQs.
		{name: "iq set without a child", raw: iq(eve, domain, "set", ""), want: "error:bad-request"},
		{name: "iq set with two children: the first (version) decides", raw: iq(eve, domain, "set", `<query xmlns="jabber:iq:version"/><query xmlns="jabber:iq:register"><remove/></query>`), want: "error:service-unavailable", check: eveStillOnline},
		{name: "iq in an unknown namespace to a contact", raw: iq(eve, bobJID, "get", `<query xmlns="urn:evil"/>`), want: "error:service-unavailable"},
		{name: "disco#items of a contact", raw: iq(eve, bobJID, "get", `<query xmlns="http://jabber.org/protocol/disco#items"/>`), want: "result"},
		{name: "disco#info of a contact by a stranger", raw: iq(mal, bobJID, "get", `<query xmlns="http://jabber.org/protocol/disco#info"/>`), want: "result"},
		{name: "last activity of a contact by a stranger", raw: iq(mal, bobJID, "get", `<query xmlns="jabber:iq:last"/>`), want: "error:service-unavailable"},
		{name: "vCard of a contact by a stranger: the number only", raw: iq(mal, bobJID, "get", `<vCard xmlns="vcard-temp"/>`), want: "result", check: vcardHas("<FN>"+string(acctBob.Number)+"</FN>", "NICKNAME")},
		{name: "vCard of a contact by its user: the nickname", raw: iq("alice@localhost/r", bobJID, "get", `<vCard xmlns="vcard-temp"/>`), want: "result", check: vcardHas("<NICKNAME>bob</NICKNAME>", "")},
		{name: "vCard4 of a contact by a stranger: the number only", raw: iq(mal, bobJID, "get", `<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="urn:xmpp:vcard4"/></pubsub>`), want: "result", check: vcardHas(string(acctBob.Number), "nickname")},
		{name: "nick node of a contact by a stranger: no item", raw: iq(mal, bobJID, "get", `<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="http://jabber.org/protocol/nick"/></pubsub>`), want: "result", check: vcardHas("<items", "<item ")},
		{name: "vCard of a JID that is no number", raw: iq(mal, "bob@"+domain, "get", `<vCard xmlns="vcard-temp"/>`), want: "error:item-not-found"},
		{name: "vCard set to a contact", raw: iq(eve, bobJID, "set", `<vCard xmlns="vcard-temp"><FN>x</FN></vCard>`), want: "error:service-unavailable"},
		{name: "pubsub items of another node of a contact", raw: iq(mal, bobJID, "get", `<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="urn:xmpp:avatar:data"/></pubsub>`), want: "error:item-not-found"},
		{name: "XEP-0100 prompt of 100 KB", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:gateway"><prompt>{huge:100000}</prompt></query>`), want: "error:*"},
		{name: "XEP-0100 prompt that is not a number", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:gateway"><prompt>bob</prompt></query>`), want: "error:*"},
		{name: "registration form asked by a stranger", raw: iq(mal, domain, "get", `<query xmlns="jabber:iq:register"/>`), want: "result"},
		{name: "version set", raw: iq(eve, domain, "set", `<query xmlns="jabber:iq:version"/>`), want: "error:service-unavailable"},

		// Registration fields.
		{name: "registration with spaces around the number", raw: iq("reg1@localhost/r", domain, "set", `<query xmlns="jabber:iq:register"><username> 4004004 </username><password>x</password></query>`), want: "error:not-acceptable"},
		{name: "registration with fullwidth digits", raw: iq("reg2@localhost/r", domain, "set", `<query xmlns="jabber:iq:register"><username>４００４００４</username><password>x</password></query>`), want: "error:not-acceptable"},
		{name: "registration with a 100 KB password", raw: iq("reg3@localhost/r", domain, "set", `<query xmlns="jabber:iq:register"><username>4004004</username><password>{huge:100000}</password></query>`), want: "error:not-authorized"},
		{name: "registration and removal in one query from a stranger", raw: iq("reg4@localhost/r", domain, "set", `<query xmlns="jabber:iq:register"><username>4004004</username><password>x</password><remove/></query>`), want: "error:registration-required"},
		{name: "registration from a server", raw: iq("localhost", domain, "set", `<query xmlns="jabber:iq:register"><username>4004004</username><password>x</password></query>`), want: "error:not-allowed"},
		{name: "registration to a contact", raw: iq("reg5@localhost/r", bobJID, "set", `<query xmlns="jabber:iq:register"><username>4004004</username><password>x</password></query>`), want: "error:service-unavailable"},
		{name: "registration form with the number twice", raw: iq("reg6@localhost/r", domain, "set", `<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit"><field var="username"><value>abc</value><value>4004004</value></field><field var="password"><value>x</value></field></x></query>`), want: "error:not-acceptable"},
		{name: "ten strangers guessing one number at once share its budget", raw: tenStrangers(), want: "none", check: fiveAtMost},

		// Presence to and from strangers.
		{name: "directed presence with a status from a stranger to a contact", raw: pres(mal, bobJID, "", `<status>hello bob</status>`), want: "none", check: noContactPresenceTo("mallory@")},
		{name: "probe of a contact from another server", raw: pres("mallory@evil.example/m", bobJID, ` type="probe"`, ""), want: "none", check: noContactPresenceTo("mallory@evil")},
		{name: "probe of a contact's full JID by a stranger", raw: pres(mal, bobJID+"/imip", ` type="probe"`, ""), want: "none", check: noContactPresenceTo("mallory@")},
		{name: "probe of alice's contact from alice's name at another server", raw: pres("alice@evil.example/r", bobJID, ` type="probe"`, ""), want: "none", check: noContactPresenceTo("alice@evil")},
		{name: "subscribed from a stranger to a contact", raw: pres(mal, bobJID, ` type="subscribed"`, ""), want: "none", check: noContactPresenceTo("mallory@")},
		{name: "subscribed that bob never asked for", raw: pres(eve, bobJID, ` type="subscribed"`, ""), want: "none", check: notContacts(acctEve.Number, acctBob.Number)},
		{name: "unsubscribed from eve to a contact she does not have", raw: pres(eve, bobJID, ` type="unsubscribed"`, ""), want: "none", check: contacts(acctBob.Number, acctAlice.Number)},
		{name: "subscription request from a stranger to the gateway", raw: pres(mal, domain, ` type="subscribe"`, ""), want: "none",
			check: func(r *rig, id string, mark int) {
				r.srv.wait(r.t, mark, "unsubscribed from the gateway to mallory", func(e elem) bool {
					return e.XMLName.Local == "presence" && e.attr("type") == "unsubscribed" && e.attr("from") == domain && strings.HasPrefix(e.attr("to"), "mallory@")
				})
			}},
		{name: "probe of the gateway by a stranger", raw: pres(mal, domain, ` type="probe"`, ""), want: "none",
			check: func(r *rig, id string, mark int) {
				r.srv.wait(r.t, mark, "unavailable from the gateway to mallory", func(e elem) bool {
					return e.XMLName.Local == "presence" && e.attr("type") == "unavailable" && e.attr("from") == domain && strings.HasPrefix(e.attr("to"), "mallory@")
				})
			}},
		{name: "probe of the gateway by a user", raw: pres(eve, domain, ` type="probe"`, ""), want: "none",
			check: func(r *rig, id string, mark int) {
				r.srv.wait(r.t, mark, "the gateway's presence to eve", func(e elem) bool {
					return e.XMLName.Local == "presence" && e.attr("type") == "" && e.attr("from") == domain && strings.HasPrefix(e.attr("to"), "eve@")
				})
			}},
		{name: "unavailable directed at a contact keeps eve online", raw: pres(eve, bobJID, ` type="unavailable"`, ""), want: "none", check: eveStillOnline},
		{name: "presence from a server to a contact", raw: pres("localhost", bobJID, "", ""), want: "none"},
		{name: "200 subscription requests from a stranger at once", raw: strings.Repeat(pres(mal, bobJID, ` type="subscribe"`, ""), 200), want: "none",
			check: func(r *rig, id string, mark int) {
				r.srv.wait(r.t, mark, "unsubscribed to mallory", func(e elem) bool {
					return e.XMLName.Local == "presence" && e.attr("type") == "unsubscribed" && strings.HasPrefix(e.attr("to"), "mallory@")
				})
			}},

		// Roster pushes, privileges, roster item exchange.
		{name: "a roster push from the users' server", raw: iq("localhost", domain, "set", `<query xmlns="jabber:iq:roster"><item jid="`+bobJID+`" subscription="both"/></query>`), want: "error:service-unavailable"},
		{name: "a roster push from another server to a contact", raw: iq("evil.example", bobJID, "set", `<query xmlns="jabber:iq:roster"><item jid="`+carolJID+`"/></query>`), want: "error:service-unavailable"},
		{name: "a roster result nobody asked for", raw: iq("localhost", domain, "result", `<query xmlns="jabber:iq:roster"><item jid="`+bobJID+`"/></query>`), want: "none"},
		{name: "a privilege grant from the server's JID with a resource", raw: msg("localhost/res", domain, "", `<privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/></privilege>`), want: "none"},
		{name: "a privilege grant from a user's bare JID", raw: msg("alice@localhost", domain, "", `<privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/><perm access="message" type="outgoing"/></privilege>`), want: "none"},
		{name: "a roster item exchange from a user to the gateway", raw: msg(eve, domain, "", `<x xmlns="http://jabber.org/protocol/rosterx"><item action="add" jid="`+carolJID+`"/></x>`), want: "none"},
		{name: "a roster item exchange from a stranger to a contact", raw: msg(mal, bobJID, "", `<x xmlns="http://jabber.org/protocol/rosterx"><item action="delete" jid="`+bobJID+`"/></x>`), want: "none"},
		{name: "a roster item exchange IQ from a stranger", raw: iq(mal, domain, "set", `<x xmlns="http://jabber.org/protocol/rosterx"><item action="add" jid="`+bobJID+`"/></x>`), want: "error:service-unavailable"},

		// Chat states and receipts.
		{name: "receipt request on a message with no id", raw: `<message from="` + eve + `" to="` + bobJID + `" type="chat"><body>no-id-receipt</body><request xmlns="urn:xmpp:receipts"/></message>`, want: "none",
			check: func(r *rig, id string, mark int) {
				bobGetsFrom(r, acctEve.Number, "no-id-receipt")
				r.chatFlows("barrier-" + id)
				for _, e := range r.srv.since(mark, func(e elem) bool { return strings.Contains(e.Inner, "urn:xmpp:receipts") }) {
					if strings.Contains(e.Inner, `id=""`) || !strings.Contains(e.Inner, "id=") {
						r.t.Errorf("a receipt without an id: %v", e)
					}
				}
			}},
		{name: "a receipt for a gateway id from a stranger", raw: msg(mal, bobJID, "", `<received xmlns="urn:xmpp:receipts" id="imip-2002002-1"/>`), want: "none"},
		{name: "a receipt with a 5,000-byte id", raw: msg(eve, bobJID, "", `<received xmlns="urn:xmpp:receipts" id="{huge:5000}"/>`), want: "none"},
		{name: "a chat state from a stranger", raw: msg(mal, bobJID, ` type="chat"`, `<composing xmlns="http://jabber.org/protocol/chatstates"/>`), want: "none"},
		{name: "a body with 1,000 chat states", raw: msg(eve, bobJID, ` type="chat"`, `<body>many-states</body>`+strings.Repeat(`<paused xmlns="http://jabber.org/protocol/chatstates"/>`, 1000)), want: "none", check: eveSays("many-states")},

		// Characters.
		{name: "surrogates as character references arrive as U+FFFD", raw: chat(eve, bobJID, "sur&#xD800;&#xDFFF;"), want: "none", check: eveSays("sur\uFFFD\uFFFD")},
		{name: "CR, LF, NEL, line separator, bidi override and joiners arrive as sent", raw: chat(eve, bobJID, "c&#xD;&#xA;&#x85;&#x2028;&#x202E;&#x200D;&#xFEFF;"), want: "none", check: eveSays("c\r\n\u0085\u2028\u202E\u200D\uFEFF")},
		{name: "DEL and C1 controls arrive as sent", raw: chat(eve, bobJID, "del\x7f&#x80;&#x9F;"), want: "none", check: eveSays("del\x7f\u0080\u009F")},
		{name: "the last code point and a noncharacter", raw: chat(eve, bobJID, "nc&#x10FFFF;&#xFDD0;"), want: "none", check: eveSays("nc\U0010FFFF\uFDD0")},
		{name: "a status with lines that look like IMIP blocks reaches IMIP as text", raw: pres(eve, domain, "", "<show>dnd</show><status>st&#xD;&#xA;LOGN 1001001&#xD;&#xA;12&#xD;&#xA;</status>"), want: "none",
			check: imipStatus(acctEve.Number, wire.StatusBusy, "st\r\nLOGN 1001001\r\n12\r\n")},
		{name: "a body of white space only", raw: chat(eve, bobJID, " \t "), want: "none", check: eveSays(" \t ")},
	}
}

// manyAttrs returns n attributes a0="" a1="" ...
func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, ` a%d="v"`, i)
	}
	return b.String()
}

// tenStrangers is one wrong guess of carol's password from each of ten
// JIDs, all at once.
func tenStrangers() string {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, `<iq id="{id}-%d" type="set" from="stranger%d@localhost/g" to=%q><query xmlns="jabber:iq:register"><username>%s</username><password>guess%d</password></query></iq>`,
			i, i, domain, acctCarol.Number, i)
	}
	return b.String()
}

// fiveAtMost: of the ten strangers' guesses, at most five (the number's
// budget, less what earlier cases spent) reached IMIP; the others were
// limited.
func fiveAtMost(r *rig, id string, mark int) {
	r.t.Helper()
	var refused, limited int
	for i := range 10 {
		e := r.srv.wait(r.t, mark, "answer to a stranger's guess", byID(fmt.Sprintf("%s-%d", id, i)))
		switch e.errCond() {
		case "not-authorized":
			refused++
		case "policy-violation":
			limited++
		default:
			r.t.Errorf("guess %d: %v", i, e)
		}
	}
	if refused > 5 || refused+limited != 10 {
		r.t.Errorf("%d guesses reached IMIP and %d were limited, want at most 5 of 10 to reach IMIP", refused, limited)
	}
}

// eveStillOnline: eve still chats (the gateway takes her as online) and
// is logged in to IMIP.
func eveStillOnline(r *rig, id string, mark int) {
	r.t.Helper()
	text := "eve-here-" + id
	r.srv.send(`<message type="chat" id="%s-eve" from=%q to=%q><body>%s</body></message>`, id, eve, bobJID, text)
	bobGetsFrom(r, acctEve.Number, text)
	if !r.imip.Online(acctEve.Number) {
		r.t.Errorf("eve is not logged in to IMIP")
	}
}

// vcardHas: the answer holds want, and not absent (unless "").
func vcardHas(want, absent string) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		for _, e := range r.srv.since(mark, byID(id)) {
			if !strings.Contains(e.Inner, want) || absent != "" && strings.Contains(e.Inner, absent) {
				r.t.Errorf("vCard answer %v: want %q without %q", e, want, absent)
			}
		}
	}
}

// stillOnline: after the barrier chat, acct is still logged in to IMIP.
func stillOnline(acct imiptest.Account) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		r.chatFlows("barrier-" + id)
		if !r.imip.Online(acct.Number) {
			r.t.Errorf("%s is not logged in to IMIP", acct.Number)
		}
	}
}

// noContactPresenceTo: after the barrier chat, the gateway sent the
// prefix's JIDs no presence of a contact that says anything: at most a
// bare unavailable (what a stranger's probe is answered with).
func noContactPresenceTo(prefix string) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		r.chatFlows("barrier-" + id)
		for _, e := range r.srv.since(mark, func(e elem) bool {
			return e.XMLName.Local == "presence" && strings.HasPrefix(e.attr("to"), prefix) && strings.Contains(e.attr("from"), "@")
		}) {
			if e.attr("type") != "unavailable" || strings.Contains(e.Inner, "<") {
				r.t.Errorf("contact presence leaked: %v", e)
			}
		}
	}
}

// carolAsked: eve's request to add carol reached IMIP, its text cut.
func carolAsked(r *rig, id string, mark int) {
	r.t.Helper()
	text := ""
	waitCond(r.t, "eve's request to add carol reached IMIP", func() bool {
		reqs, err := r.imip.Store().Requests(context.Background(), acctCarol.Number)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, q := range reqs {
			if q.From == acctEve.Number {
				text = q.Text
				return true
			}
		}
		return false
	})
	if len(text) > 4096 {
		r.t.Errorf("the request's text on IMIP is %d bytes", len(text))
	}
}

// notContacts: after the barrier chat, neither a nor b is on the other's
// IMIP list.
func notContacts(a, b wire.Number) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		r.chatFlows("barrier-" + id)
		for _, p := range [][2]wire.Number{{a, b}, {b, a}} {
			if ok, err := r.imip.Store().HasContact(context.Background(), p[0], p[1]); err != nil || ok {
				r.t.Errorf("%s has %s on its IMIP list (err %v)", p[0], p[1], err)
			}
		}
	}
}

// contacts: after the barrier chat, a still has b on its IMIP list.
func contacts(a, b wire.Number) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		r.chatFlows("barrier-" + id)
		if ok, err := r.imip.Store().HasContact(context.Background(), a, b); err != nil || !ok {
			r.t.Errorf("%s lost %s from its IMIP list (err %v)", a, b, err)
		}
	}
}

// imipStatus waits until n's presence on IMIP is st with text.
func imipStatus(n wire.Number, st wire.Status, text string) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		waitCond(r.t, fmt.Sprintf("%s on IMIP %s %q", n, st, text), func() bool {
			gotSt, gotText := r.imip.Server().Presence(n)
			return gotSt == st && gotText == text
		})
	}
}
