// Package hostile holds the hostile-stanza suite (its tests only): the
// whole transport, as internal/app wires it, against a fake XMPP server of
// the test's own that speaks XEP-0114 on 127.0.0.1 and the reference IMIP
// server in process. The fake server plays the users: an attacker sends
// one hostile stanza after another, each with its asserted reaction (an
// error of a given condition, nothing, or a given effect on IMIP), while
// another user's conversation with an IMIP contact goes on; after every
// case the suite checks that the component link is still the first one
// and that the other user's messages still flow both ways (bob's messages
// are kept in a log, so a check also sees what arrived before a barrier).
// TestIllFormedXMLFromServer sends what no server forwards (XML that is
// not well-formed, or not the restricted XML of XMPP): the component drops
// that link and connects again, and the chat flows once more.
package hostile
