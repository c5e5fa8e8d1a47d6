package xmppside

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// cardHandler is a fakeHandler that answers vCards and names the service.
type cardHandler struct {
	*fakeHandler
	mu      sync.Mutex
	service string
	asked   [][2]string // asker, about
	block   chan struct{}
}

func (h *cardHandler) ServiceName() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.service
}

// CardNow answers numbers from 5000 on at once (and fails 5404).
func (h *cardHandler) CardNow(asker, about jid.JID) (Card, bool, error) {
	switch l := about.Localpart(); {
	case l == "5404":
		return Card{}, true, &Error{Condition: stanza.ItemNotFound, Text: "no such contact now"}
	case len(l) == 4 && l >= "5000":
		return Card{FullName: "fast " + l, Nickname: "fast"}, true, nil
	}
	return Card{}, false, nil
}

func (h *cardHandler) Card(ctx context.Context, asker, about jid.JID) (Card, error) {
	h.mu.Lock()
	h.asked = append(h.asked, [2]string{asker.String(), about.String()})
	block := h.block
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Card{}, ctx.Err()
		}
	}
	switch about.Localpart() {
	case "":
		return Card{Note: "the gateway"}, nil
	case "404":
		return Card{}, &Error{Condition: stanza.ItemNotFound, Text: "no such contact"}
	case "500":
		return Card{}, errors.New("secret detail")
	case "1":
		return Card{FullName: "1"}, nil
	}
	return Card{FullName: "Bob", Nickname: "bob", Note: "IMIP number " + about.Localpart()}, nil
}

func startCardEnv(t *testing.T) (*testEnv, *cardHandler) {
	t.Helper()
	var ch *cardHandler
	env := startEnvWith(t, nil, func(h *fakeHandler) Handler {
		ch = &cardHandler{fakeHandler: h}
		return ch
	})
	return env, ch
}

const (
	vcardIQ  = `<iq type="get" id="%s" from="juliet@localhost/balcony" to="%s"><vCard xmlns="vcard-temp"/></iq>`
	pubsubIQ = `<iq type="get" id="%s" from="juliet@localhost/balcony" to="%s"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="%s"/></pubsub></iq>`
	discoIQ  = `<iq type="get" id="%s" from="juliet@localhost/balcony" to="%s"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`
)

// TestVCardContact: a contact's vcard-temp carries the Card, the provider
// hears the asker's full JID and the contact's bare JID.
func TestVCardContact(t *testing.T) {
	env, h := startCardEnv(t)
	reply := env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, "v1", "1234@imip.localhost/res"))
	if reply.attr("type") != "result" || reply.attr("from") != "1234@imip.localhost/res" {
		t.Fatalf("reply = %s", reply)
	}
	v := reply.child(nsVCardTemp, "vCard")
	for name, want := range map[string]string{"FN": "Bob", "NICKNAME": "bob", "NOTE": "IMIP number 1234", "DESC": "IMIP number 1234"} {
		if got := v.path(name).text(); got != want {
			t.Errorf("%s = %q, want %q: %s", name, got, want, reply)
		}
	}
	h.mu.Lock()
	asked := slices.Clone(h.asked)
	h.mu.Unlock()
	if want := [][2]string{{"juliet@localhost/balcony", "1234@imip.localhost"}}; !slices.Equal(asked, want) {
		t.Errorf("Card asked %v, want %v", asked, want)
	}
	// Empty fields are left out.
	reply = env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, "v2", "1@imip.localhost"))
	if v := reply.child(nsVCardTemp, "vCard"); len(v.Nodes) != 1 || v.path("FN").text() != "1" {
		t.Errorf("number-only card = %s", reply)
	}
}

// TestVCardDomain: the component's own vCard is named like its disco
// identity: the ServiceName once there is one, else Config.IdentityName.
func TestVCardDomain(t *testing.T) {
	env, h := startCardEnv(t)
	name := func(id string) (vcard, disco string) {
		t.Helper()
		r := env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, id+"v", "imip.localhost"))
		d := env.fc.roundTrip(t, fmt.Sprintf(discoIQ, id+"d", "imip.localhost"))
		if r.child(nsVCardTemp, "vCard").path("NOTE").text() != "the gateway" {
			t.Errorf("domain card = %s", r)
		}
		return r.child(nsVCardTemp, "vCard").path("FN").text(), d.path("query", "identity").attr("name")
	}
	if v, d := name("a"); v != DefaultIdentityName || d != DefaultIdentityName {
		t.Errorf("before a service name: vCard FN %q, disco name %q, want %q", v, d, DefaultIdentityName)
	}
	h.mu.Lock()
	h.service = "Odigo"
	h.mu.Unlock()
	if v, d := name("b"); v != "Odigo" || d != "Odigo" {
		t.Errorf("with a service name: vCard FN %q, disco name %q, want Odigo", v, d)
	}
}

// TestVCardDisco: vcard-temp and urn:xmpp:vcard4 are advertised for the
// domain and contacts when answered, and not otherwise.
func TestVCardDisco(t *testing.T) {
	env, _ := startCardEnv(t)
	for i, to := range []string{"imip.localhost", "42@imip.localhost"} {
		f := features(env.fc.roundTrip(t, fmt.Sprintf(discoIQ, fmt.Sprint("d", i), to)))
		if !slices.Contains(f, nsVCardTemp) || !slices.Contains(f, nsVCard4Node) {
			t.Errorf("%s: features %v lack the vCard ones", to, f)
		}
	}
	// The package-level list of the domain's features is not changed.
	if slices.Contains(domainFeatures, nsVCardTemp) {
		t.Errorf("domainFeatures modified: %v", domainFeatures)
	}

	plain := startEnv(t, nil)
	for i, to := range []string{"imip.localhost", "42@imip.localhost"} {
		f := features(plain.fc.roundTrip(t, fmt.Sprintf(discoIQ, fmt.Sprint("p", i), to)))
		if slices.Contains(f, nsVCardTemp) || slices.Contains(f, nsVCard4Node) {
			t.Errorf("%s without a CardProvider: features %v", to, f)
		}
		r := plain.fc.roundTrip(t, fmt.Sprintf(vcardIQ, fmt.Sprint("pv", i), to))
		if errCondition(r) != "service-unavailable" {
			t.Errorf("%s: vCard without a CardProvider = %s", to, r)
		}
	}
}

// TestVCardErrors: a typed error reaches the asker as it is; any other is
// internal-server-error without its text.
func TestVCardErrors(t *testing.T) {
	env, _ := startCardEnv(t)
	r := env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, "e1", "404@imip.localhost"))
	if errCondition(r) != "item-not-found" || errText(r) != "no such contact" {
		t.Errorf("typed error = %s", r)
	}
	r = env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, "e2", "500@imip.localhost"))
	if errCondition(r) != "internal-server-error" || errText(r) != "" {
		t.Errorf("untyped error = %s", r)
	}
	r = env.fc.roundTrip(t, `<iq type="set" id="e3" from="juliet@localhost/balcony" to="1@imip.localhost"><vCard xmlns="vcard-temp"><FN>x</FN></vCard></iq>`)
	if errCondition(r) != "service-unavailable" {
		t.Errorf("vCard set = %s", r)
	}
}

// TestVCardPEP: the vCard4 and nickname PEP nodes answer an items get with
// one item; other nodes and requests are refused.
func TestVCardPEP(t *testing.T) {
	env, _ := startCardEnv(t)
	r := env.fc.roundTrip(t, fmt.Sprintf(pubsubIQ, "p1", "1234@imip.localhost", nsVCard4Node))
	items := r.child(nsPubSub, "pubsub").path("items")
	if items.attr("node") != nsVCard4Node || items.path("item").attr("id") != pepItemID {
		t.Fatalf("vCard4 items = %s", r)
	}
	vc := items.path("item").child(nsVCard4, "vcard")
	for name, want := range map[string]string{"fn": "Bob", "nickname": "bob", "note": "IMIP number 1234"} {
		if got := vc.path(name, "text").text(); got != want {
			t.Errorf("vCard4 %s = %q, want %q: %s", name, got, want, r)
		}
	}

	r = env.fc.roundTrip(t, fmt.Sprintf(pubsubIQ, "p2", "1234@imip.localhost", nsNick))
	if got := r.child(nsPubSub, "pubsub").path("items", "item").child(nsNick, "nick").text(); got != "bob" {
		t.Errorf("nick item = %s", r)
	}
	// No nickname: the node has no item.
	r = env.fc.roundTrip(t, fmt.Sprintf(pubsubIQ, "p3", "1@imip.localhost", nsNick))
	if items := r.child(nsPubSub, "pubsub").path("items"); r.attr("type") != "result" || items == nil || len(items.Nodes) != 0 {
		t.Errorf("nick without a nickname = %s", r)
	}
	r = env.fc.roundTrip(t, fmt.Sprintf(pubsubIQ, "p4", "1234@imip.localhost", "urn:xmpp:avatar:data"))
	if errCondition(r) != "item-not-found" {
		t.Errorf("other node = %s", r)
	}
	r = env.fc.roundTrip(t, `<iq type="get" id="p5" from="juliet@localhost/balcony" to="1234@imip.localhost"><pubsub xmlns="http://jabber.org/protocol/pubsub"><subscriptions/></pubsub></iq>`)
	if errCondition(r) != "feature-not-implemented" {
		t.Errorf("other pubsub request = %s", r)
	}
}

// TestVCardNotOnReadLoop: a Card that takes its time does not hold up
// other stanzas.
func TestVCardNotOnReadLoop(t *testing.T) {
	env, h := startCardEnv(t)
	release := make(chan struct{})
	h.mu.Lock()
	h.block = release
	h.mu.Unlock()
	env.fc.send(t, fmt.Sprintf(vcardIQ, "slow", "1234@imip.localhost"))
	ping := env.fc.roundTrip(t, `<iq type="get" id="ping1" from="juliet@localhost/balcony" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	if ping.attr("type") != "result" {
		t.Fatalf("ping while a vCard waits = %s", ping)
	}
	close(release)
	r := env.fc.expect(t)
	if r.attr("id") != "slow" || r.child(nsVCardTemp, "vCard").path("NICKNAME").text() != "bob" {
		t.Errorf("slow vCard = %s", r)
	}
}

// TestVCardBurst: a client asking the vCards of many contacts at once gets
// each answered: at once when CardNow has them, else a result or
// resource-constraint beyond the bound of requests in progress, never
// silence.
func TestVCardBurst(t *testing.T) {
	env, _ := startCardEnv(t)
	const n = 200
	burst := func(first int) (results, busy int) {
		t.Helper()
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, vcardIQ, fmt.Sprint("b", first+i), fmt.Sprint(first+i, "@imip.localhost"))
		}
		env.fc.send(t, b.String())
		for range n {
			r := env.fc.expect(t)
			switch {
			case r.attr("type") == "result":
				results++
			case errCondition(r) == "resource-constraint":
				busy++
			default:
				t.Errorf("answer %s", r)
			}
		}
		return results, busy
	}
	if results, busy := burst(5000); results != n {
		t.Errorf("answered at once: %d results, %d resource-constraint, want %d results", results, busy, n)
	}
	results, busy := burst(1000)
	t.Logf("%d vCard requests that wait for Card, in one write: %d results, %d resource-constraint", n, results, busy)
}

// TestVCardNow: what CardNow answers goes out as is, its errors too.
func TestVCardNow(t *testing.T) {
	env, h := startCardEnv(t)
	r := env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, "n1", "5001@imip.localhost"))
	if v := r.child(nsVCardTemp, "vCard"); v.path("FN").text() != "fast 5001" || v.path("NICKNAME").text() != "fast" {
		t.Errorf("CardNow's card = %s", r)
	}
	r = env.fc.roundTrip(t, fmt.Sprintf(vcardIQ, "n2", "5404@imip.localhost"))
	if errCondition(r) != "item-not-found" || errText(r) != "no such contact now" {
		t.Errorf("CardNow's error = %s", r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.asked) != 0 {
		t.Errorf("Card asked %v after CardNow answered", h.asked)
	}
}
