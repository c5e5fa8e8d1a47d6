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
// The zero value has none. A user has one resource or a few, so they are
// a small slice, not a map (whose buckets cost an idle user ~700 bytes).
type resources struct {
	m   []resEntry // nil when empty
	seq uint64
}

// resEntry is one resource, by its resourcepart.
type resEntry struct {
	name string
	resource
}

// any reports whether at least one resource is available.
func (r *resources) any() bool { return len(r.m) > 0 }

// count returns the number of available resources.
func (r *resources) count() int { return len(r.m) }

// get returns resource name.
func (r *resources) get(name string) (resource, bool) {
	for _, e := range r.m {
		if e.name == name {
			return e.resource, true
		}
	}
	return resource{}, false
}

// set records resource name.
func (r *resources) set(name string, x resource) {
	for i := range r.m {
		if r.m[i].name == name {
			r.m[i].resource = x
			return
		}
	}
	r.m = append(r.m, resEntry{name: name, resource: x})
}

// del forgets the resources for which drop is true and returns how many.
func (r *resources) del(drop func(resEntry) bool) int {
	n := len(r.m)
	kept := r.m[:0]
	for _, e := range r.m {
		if !drop(e) {
			kept = append(kept, e)
		}
	}
	clear(r.m[len(kept):])
	r.m = kept
	if len(r.m) == 0 {
		r.m = nil
	}
	return n - len(kept)
}

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
		r.del(func(e resEntry) bool { return res == "" || e.name == res })
		return jid.JID{}, false
	}
	r.seq++
	old, existed := r.get(res)
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
		r.set(res, old)
		return jid.JID{}, false // the same presence again, through another contact's JID
	}
	r.set(res, n)
	return p.From, !existed
}

// broadcastSeen reports whether the presence of resource res (every
// resource, for the bare JID) has reached the gateway's own JID, so that an
// unavailable sent to one contact JID only is a directed one.
func (r *resources) broadcastSeen(res string) bool {
	if res != "" {
		x, ok := r.get(res)
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
	for i := range r.m {
		if x := &r.m[i]; x.link < link && x.viaGateway {
			x.probe = link
			marked = true
		}
	}
	return marked
}

// dropUnconfirmed forgets the resources that did not answer the probe and
// returns how many.
func (r *resources) dropUnconfirmed() int {
	return r.del(func(e resEntry) bool { return e.probe != 0 })
}

// aggregate returns the IMIP status that stands for the user's resources:
// the highest priority resource's, the most recently changed on a tie.
func (r *resources) aggregate() (wire.Status, string) {
	var best *resource
	for i := range r.m {
		if x := &r.m[i].resource; best == nil || x.priority > best.priority || (x.priority == best.priority && x.seq > best.seq) {
			best = x
		}
	}
	if best == nil {
		return wire.StatusOffline, ""
	}
	return showToStatus(best.show), best.status
}

// clear forgets every resource.
func (r *resources) reset() { r.m = nil }
