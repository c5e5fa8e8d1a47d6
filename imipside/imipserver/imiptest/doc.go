// Package imiptest runs an in-memory imipserver on 127.0.0.1 for tests,
// with fault knobs (imipserver.Faults) to check how clients cope with
// servers that deviate from docs/PROTOCOL.md.
//
//	srv := imiptest.Start(t, imiptest.Options{
//		Accounts: []imiptest.Account{{Number: "1001001", Password: "pw", Nick: "alice"}},
//		Faults:   imiptest.Faults{NoOurs: true},
//	})
//	// dial srv.Addr() ...
//
// The server offers the [ours] mesg-ack extension (see package imipserver);
// Faults.NoMesgAck turns it off, to test a client's best-effort path, and
// Faults.SilentMESG never sends ACK 600 for a client MESG, as Odigo does
// for errors-only. Store().Messages shows what is held, pushed or not, until
// confirmed.
//
// The server is stopped by t.Cleanup; every goroutine it started has ended
// when the cleanup returns.
package imiptest
