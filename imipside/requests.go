package imipside

import "imip-transport/imipside/wire"

// request is a block sent with a Send method or a blocking wrapper that
// waits for its outcome.
type request struct {
	id  uint64
	num wire.Number // the MESG's recipient, the LIST contact
	op  op
	w   *waiter // set by a blocking wrapper: the outcome goes there, not to the Handler
}

// op is the kind of a request.
type op uint8

const (
	opNone op = iota // not tracked: keep-alive and barrier PING, DISC, client ACK
	opSTAT
	opMESG
	opListAdd
	opListAccept
	opListReject
	opListRemove
	opPING // Ping, the blocking wrapper
)

var opTypes = [...]string{
	opNone:       "",
	opSTAT:       RequestSTAT,
	opMESG:       RequestMESG,
	opListAdd:    RequestListAdd,
	opListAccept: RequestListAccept,
	opListReject: RequestListReject,
	opListRemove: RequestListRemove,
	opPING:       wire.TypePING,
}

// requests is the FIFO of requests without an outcome, in ascending ID
// order: a ring that grows by doubling (up to MaxOutstanding entries) and is
// released whenever it empties, so an idle session holds none.
type requests struct {
	ring []request
	head int
	n    int
}

func (q *requests) len() int { return q.n }

func (q *requests) at(i int) *request { return &q.ring[(q.head+i)%len(q.ring)] }

func (q *requests) push(r request) {
	if q.n == len(q.ring) {
		ring := make([]request, max(4, 2*len(q.ring)))
		for i := range q.n {
			ring[i] = *q.at(i)
		}
		q.ring, q.head = ring, 0
	}
	*q.at(q.n) = r
	q.n++
}

// newest returns the ID of the newest request, 0 when there is none.
func (q *requests) newest() uint64 {
	if q.n == 0 {
		return 0
	}
	return q.at(q.n - 1).id
}

// settle removes the requests with IDs up to ref and appends them to dst.
func (q *requests) settle(dst []request, ref uint64) []request {
	for q.n > 0 {
		r := q.at(0)
		if r.id > ref {
			break
		}
		dst = append(dst, *r)
		*r = request{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	if q.n == 0 {
		q.ring, q.head = nil, 0
	}
	return dst
}

// drain removes every request and returns the waiters among them.
func (q *requests) drain() []*waiter {
	var ws []*waiter
	for i := range q.n {
		if w := q.at(i).w; w != nil {
			ws = append(ws, w)
		}
	}
	*q = requests{}
	return ws
}
