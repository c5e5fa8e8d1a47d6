package imipside_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
)

// exampleServer is a minimal IMIP server for one connection: it accepts the
// login of 6340564 with password "password", ACKs every block (MESG to an
// unknown number with 811), answers DISC and closes. It reports each MESG on
// got.
func exampleServer() (addr string, got <-chan string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ch := make(chan string, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r, w := wire.NewReader(conn, wire.Limits{}), wire.NewWriter(conn)
		reply := func(typ, arg string, ref string, body string, hdrs ...wire.Header) {
			b := wire.Block{Type: typ, Arg: arg, Headers: append(hdrs, wire.Header{Name: "ID", Value: "9000"}), NoEmptyLine: true}
			if ref != "" {
				b.Add(wire.HdrReference, ref)
			}
			b.Body = []byte(body)
			w.WriteBlock(&b)
		}
		const salt = "1919833824"
		var b wire.Block
		for r.ReadBlock(&b) == nil {
			id := b.Get(wire.HdrID)
			switch b.Type {
			case wire.TypeHELO:
				reply(wire.TypeHELO, "", "", salt, wire.Header{Name: wire.HdrKeepAlive, Value: "60"})
			case wire.TypeLOGN:
				if string(b.Body) != wire.AuthDigest(salt, "password") {
					reply(wire.TypeACK, "810", id, "")
					return
				}
				reply(wire.TypeLOGN, b.Arg, id, "", wire.Header{Name: wire.HdrBuddy, Value: `7744387 "mawis76"`})
			case wire.TypeMESG:
				ch <- b.Get(wire.HdrTo) + ": " + string(b.Body)
				code := "600"
				if b.Get(wire.HdrTo) != "7744387" {
					code = "811"
				}
				reply(wire.TypeACK, code, id, "")
			case wire.TypeDISC:
				reply(wire.TypeACK, "600", id, "")
				return
			default:
				reply(wire.TypeACK, "600", id, "")
			}
		}
	}()
	return ln.Addr().String(), ch, func() { ln.Close(); <-done }
}

func Example() {
	addr, got, stop := exampleServer()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	replies := make(chan imipside.ReplyEvent, 8)
	s, err := imipside.Dial(ctx, imipside.Config{
		Addr:     addr,
		Number:   "6340564",
		Password: "password",
		Handler: imipside.HandlerFunc(func(ev imipside.Event) {
			// Called on the session's reader goroutine, in wire order.
			switch ev := ev.(type) {
			case imipside.ReplyEvent:
				replies <- ev
			case imipside.ClosedEvent:
				close(replies)
			}
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("contacts:", s.Contacts())
	// Send methods queue the block and return its ID at once.
	id, err := s.SendMessage("7744387", "hello")
	fmt.Println("queued MESG", id, err)
	id, err = s.SendMessage("1234567", "anyone?")
	fmt.Println("queued MESG", id, err)
	fmt.Println("server got", <-got)
	fmt.Println("server got", <-got)
	// The outcomes arrive as events.
	for range 2 {
		r := <-replies
		fmt.Println("MESG", r.ID, "to", r.Number, "OK:", r.OK(), "code:", r.Code)
	}
	// Logout does not wait either: the ClosedEvent ends the session.
	fmt.Println("logout:", s.Logout())
	<-s.Done()
	_, open := <-replies
	fmt.Println("closed:", !open, s.Err())
	// Output:
	// contacts: [{7744387 mawis76}]
	// queued MESG 1003 <nil>
	// queued MESG 1004 <nil>
	// server got 7744387: hello
	// server got 1234567: anyone?
	// MESG 1003 to 7744387 OK: true code: 600 (ok)
	// MESG 1004 to 1234567 OK: false code: 811 (illegal user id)
	// logout: <nil>
	// closed: true <nil>
}
