package gateway

import (
	"mellium.im/xmpp/jid"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// The user's XMPP resources and their presence as a pure state machine: no
// goroutine, no clock, no I/O. The run loop feeds it batches of
// availability presence, link-ups and the end of a probe's wait, and acts on
// what it reports.

// resource is one available XMPP resource of the user.
type resource struct {
	show     string
	status   string
	priority int
	seq      uint64 // when it last changed, to break priority ties
	// probe: the component link (non-zero) whose probe this resource,
	// known from before that link, has not answered yet; only a presence
	// that came on that link or a later one answers it.
	probe uint64
	// viaGateway: its presence reached the gateway's own JID (a broadcast),
	// so a lone unavailable to one contact JID is directed, not a logout.
	viaGateway bool
	// discoDone: its disco#info was answered (asked once per resource);
	// rosterx: it advertises XEP-0144.
	discoDone, rosterx bool
	// link: the component link its last presence came on.
	link uint64
}

// resources is the presence machine: the user's available resources.
// The zero value has none.
type resources struct {
	m   map[string]resource
	seq uint64
}

// any reports whether at least one resource is available.
func (r *resources) any() bool { return len(r.m) > 0 }

// count returns the number of available resources.
func (r *resources) count() int { return len(r.m) }

// apply records a batch of availability presences in arrival order and
// returns the resources that are new (they need the presence of the gateway
// and of every online contact). Copies of a presence the machine already
// has (the server sends one to the gateway and to every contact JID) change
// nothing.
func (r *resources) apply(batch []pendingAvail) (fresh []jid.JID) {
	for _, pa := range batch {
		if full, isNew := r.applyOne(pa.p, pa.toGateway, pa.link); isNew {
			fresh = append(fresh, full)
		}
	}
	return fresh
}

func (r *resources) applyOne(p xmppside.Presence, toGateway bool, link uint64) (jid.JID, bool) {
	res := p.From.Resourcepart()
	if p.Type == "unavailable" {
		if !toGateway && r.broadcastSeen(res) {
			// Directed unavailable to one contact ("invisible to X"): IMIP
			// has no per-contact presence, and the user is still online.
			return jid.JID{}, false
		}
		if res == "" {
			clear(r.m)
		} else {
			delete(r.m, res)
		}
		return jid.JID{}, false
	}
	if r.m == nil {
		r.m = make(map[string]resource, 1)
	}
	r.seq++
	old, existed := r.m[res]
	n := resource{show: p.Show, status: p.Status, priority: p.Priority, seq: r.seq,
		viaGateway: toGateway || old.viaGateway, discoDone: old.discoDone, rosterx: old.rosterx, link: link}
	if existed && old.show == n.show && old.status == n.status && old.priority == n.priority {
		if link >= old.link {
			old.link = link
		}
		if old.probe != 0 && link >= old.probe {
			old.probe = 0 // it answered the probe
		}
		old.viaGateway = n.viaGateway
		r.m[res] = old
		return jid.JID{}, false // the same presence again, through another contact's JID
	}
	r.m[res] = n
	return p.From, !existed
}

// broadcastSeen reports whether the presence of resource res (every
// resource, for the bare JID) has reached the gateway's own JID, so that an
// unavailable sent to one contact JID only is a directed one.
func (r *resources) broadcastSeen(res string) bool {
	if res != "" {
		x, ok := r.m[res]
		return ok && x.viaGateway
	}
	for _, x := range r.m {
		if x.viaGateway {
			return true
		}
	}
	return false
}

// linkUp marks the resources that must answer the gateway's probe after
// the component link came back (number link): those last heard of on an
// older link, whose presence reached the gateway's own JID (a resource
// known only through contact JIDs cannot answer the gateway's probe, and
// is kept). It reports whether any was marked: then the run loop waits
// ProbeTimeout and calls dropUnconfirmed.
func (r *resources) linkUp(link uint64) bool {
	marked := false
	for k, x := range r.m {
		if x.link < link && x.viaGateway {
			x.probe = link
			r.m[k] = x
			marked = true
		}
	}
	return marked
}

// dropUnconfirmed forgets the resources that did not answer the probe and
// returns how many.
func (r *resources) dropUnconfirmed() int {
	dropped := 0
	for k, x := range r.m {
		if x.probe != 0 {
			delete(r.m, k)
			dropped++
		}
	}
	return dropped
}

// aggregate returns the IMIP status that stands for the user's resources:
// the highest priority resource's, the most recently changed on a tie.
func (r *resources) aggregate() (wire.Status, string) {
	var best *resource
	for _, x := range r.m {
		if best == nil || x.priority > best.priority || (x.priority == best.priority && x.seq > best.seq) {
			best = &x
		}
	}
	if best == nil {
		return wire.StatusOffline, ""
	}
	return showToStatus(best.show), best.status
}

// clear forgets every resource.
func (r *resources) reset() { r.m = nil }
