package wire_test

import (
	"fmt"
	"strings"

	"imip-transport/imipside/wire"
)

func Example() {
	// The server's answer to a login: Odigo style, without the empty line.
	in := strings.NewReader("LOGN 6340564\r\n70\r\n" +
		"Buddy: 7744387 \"mawis76\",1234567 \"other\"\r\nID: 19196\r\nReference: 1002\r\n")
	r := wire.NewReader(in, wire.Limits{})
	var b wire.Block
	if err := r.ReadBlock(&b); err != nil {
		fmt.Println("read:", err)
		return
	}
	ref, _ := b.Reference()
	buddies, _ := wire.ParseBuddyList(b.Get(wire.HdrBuddy))
	fmt.Println(b.Type, b.Arg, "reference", ref)
	for _, bd := range buddies {
		fmt.Printf("buddy %s %q\n", bd.Number, bd.Nick)
	}

	// A message to the first contact.
	var out strings.Builder
	w := wire.NewWriter(&out)
	msg := wire.Block{
		Type: wire.TypeMESG,
		Headers: []wire.Header{
			{Name: wire.HdrID, Value: "1003"},
			{Name: wire.HdrTo, Value: buddies[0].Number.String()},
			{Name: wire.HdrACKType, Value: wire.ACKTypeErrorsOnly},
			{Name: wire.HdrFrom, Value: "6340564"},
		},
		Body: []byte("hi"),
	}
	if err := w.WriteBlock(&msg); err != nil {
		fmt.Println("write:", err)
		return
	}
	fmt.Printf("%q\n", out.String())
	// Output:
	// LOGN 6340564 reference 1002
	// buddy 7744387 "mawis76"
	// buddy 1234567 "other"
	// "MESG\r\n65\r\nID: 1003\r\nTo: 7744387\r\nACK-Type: errors-only\r\nFrom: 6340564\r\n\r\nhi"
}
