package imipserver

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"imip-transport/imipside/wire"
)

// encode builds a server block: it adds the next server ID, orders the
// headers (alphabetically, as Odigo does, unless a fault says otherwise),
// leaves out the empty line of a block without a body (Odigo style), and
// checks the size against Limits.MaxSize.
func (s *Server) encode(typ, arg string, hdrs []wire.Header, body string) ([]byte, error) {
	buf, _, err := s.encodeID(typ, arg, hdrs, body)
	return buf, err
}

// encodeID is encode that also returns the block's ID.
func (s *Server) encodeID(typ, arg string, hdrs []wire.Header, body string) ([]byte, uint64, error) {
	id := s.ids.Add(1)
	b := wire.Block{
		Type:        typ,
		Arg:         arg,
		Headers:     append(hdrs, wire.Header{Name: wire.HdrID, Value: strconv.FormatUint(id, 10)}),
		Body:        []byte(body),
		NoEmptyLine: !s.cfg.Faults.AlwaysEmptyLine,
	}
	f := s.cfg.Faults
	if f.ShuffleHeaders {
		rand.Shuffle(len(b.Headers), func(i, j int) { b.Headers[i], b.Headers[j] = b.Headers[j], b.Headers[i] })
	} else {
		slices.SortFunc(b.Headers, func(x, y wire.Header) int { return strings.Compare(x.Name, y.Name) })
	}
	if f.IDLast {
		i := slices.IndexFunc(b.Headers, func(h wire.Header) bool { return h.Name == wire.HdrID })
		h := b.Headers[i]
		b.Headers = append(slices.Delete(b.Headers, i, i+1), h)
	}
	if n := wire.ContentSize(&b); n > s.cfg.Limits.MaxSize {
		return nil, 0, fmt.Errorf("imipserver: %s block of %d bytes is above the limit %d: %w",
			typ, n, s.cfg.Limits.MaxSize, wire.ErrSizeTooLarge)
	}
	out, err := wire.AppendBlock(nil, &b)
	if err != nil {
		return nil, 0, fmt.Errorf("imipserver: encode %s: %w", typ, err)
	}
	return out, id, nil
}

// send encodes a block and queues it on c. Encoding errors are logged.
func (c *conn) send(typ, arg string, hdrs []wire.Header, body string) bool {
	buf, err := c.srv.encode(typ, arg, hdrs, body)
	if err != nil {
		c.log().Error("imipserver: cannot encode block", "err", err)
		return false
	}
	return c.enqueue(outItem{buf: buf})
}

// sendACK queues ACK <code>, referencing req's ID when req has one.
func (c *conn) sendACK(req *wire.Block, code wire.Code) {
	var ref string
	if req != nil {
		ref, _ = req.Lookup(wire.HdrID)
	}
	c.sendACKRef(ref, code)
}

// sendACKRef queues ACK <code> with Reference: ref, or no Reference when
// ref is "". Safe from any goroutine.
func (c *conn) sendACKRef(ref string, code wire.Code) {
	if it := c.ackItem(ref, code); it != nil {
		c.answer(*it)
	}
}

// ackItem encodes ACK <code> (with Reference: ref unless ""), or logs and
// returns nil.
func (c *conn) ackItem(ref string, code wire.Code) *outItem {
	var hdrs []wire.Header
	if ref != "" {
		hdrs = append(hdrs, wire.Header{Name: wire.HdrReference, Value: ref})
	}
	buf, err := c.srv.encode(wire.TypeACK, strconv.Itoa(int(code)), hdrs, "")
	if err != nil {
		c.log().Error("imipserver: cannot encode ACK", "err", err)
		return nil
	}
	return &outItem{buf: buf, delay: c.srv.cfg.Faults.DelayACK}
}

// Answers in order. A client may take the answer to a later block as
// confirming every earlier one (docs/PROTOCOL.md), so an ACK that waits
// (a held message's, see heldMsg) holds the connection's later ACKs back,
// without holding the reader: they wait in answers, and release queues
// the ready ones from the front. Pushes are not answers and do not wait.

// answerSlot is one ACK in c.answers.
type answerSlot struct {
	ref   string  // the Reference of a held message's ACK
	it    outItem // the block, once ready
	ready bool
	skip  bool // ready, nothing to send
}

// answer queues it after the answers that wait, or at once when none does.
func (c *conn) answer(it outItem) {
	c.amu.Lock()
	defer c.amu.Unlock()
	if len(c.answers) == 0 {
		c.enqueue(it)
		return
	}
	c.answers = append(c.answers, &answerSlot{it: it, ready: true})
}

// holdAnswer reserves the place of an ACK that is not ready yet.
func (c *conn) holdAnswer(ref string) *answerSlot {
	c.amu.Lock()
	defer c.amu.Unlock()
	a := &answerSlot{ref: ref}
	c.answers = append(c.answers, a)
	return a
}

// release fills a held answer (it nil: nothing to send) and queues the
// ready answers at the front.
func (c *conn) release(a *answerSlot, it *outItem) {
	c.amu.Lock()
	defer c.amu.Unlock()
	if it != nil {
		a.it = *it
	} else {
		a.skip = true
	}
	a.ready = true
	n := 0
	for _, x := range c.answers {
		if !x.ready {
			break
		}
		if !x.skip {
			c.enqueue(x.it)
		}
		n++
	}
	clear(c.answers[:n])
	c.answers = c.answers[n:]
	if len(c.answers) == 0 {
		c.answers = nil
	}
}

func hdr(name, value string) wire.Header { return wire.Header{Name: name, Value: value} }
