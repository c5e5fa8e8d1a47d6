package roster

import (
	"errors"
	"strings"
	"testing"

	"imip-transport/imipside/wire"

	"mellium.im/xmpp/jid"
)

var gw = jid.MustParse("imip.localhost")

func TestJID(t *testing.T) {
	tests := []struct {
		n    wire.Number
		gw   jid.JID
		want string
	}{
		0: {"6340564", gw, "6340564@imip.localhost"},
		1: {"0", gw, "0@imip.localhost"},
		2: {"00123", gw, "00123@imip.localhost"},
		3: {wire.Number(strings.Repeat("9", wire.MaxNumberLen)), gw, strings.Repeat("9", wire.MaxNumberLen) + "@imip.localhost"},
		// Localpart and resource of the gateway address are ignored.
		4: {"7744387", jid.MustParse("admin@imip.localhost/res"), "7744387@imip.localhost"},
		// Invalid numbers map to the zero JID, never to the gateway itself.
		5:  {"", gw, ""},
		6:  {"+123", gw, ""},
		7:  {"12 3", gw, ""},
		8:  {"12a", gw, ""},
		9:  {"1@evil.example", gw, ""},
		10: {"1/res", gw, ""},
		11: {wire.Number(strings.Repeat("9", wire.MaxNumberLen+1)), gw, ""},
		12: {"١٢٣", gw, ""},
		13: {"123", jid.JID{}, ""},
	}
	for i, tc := range tests {
		got := JID(tc.n, tc.gw)
		if got.String() != tc.want {
			t.Errorf("%d: JID(%q, %q) = %q, want %q", i, tc.n, tc.gw, got, tc.want)
		}
		if tc.want == "" {
			continue
		}
		back, err := Number(got, tc.gw)
		if err != nil || back != tc.n {
			t.Errorf("%d: Number(JID(%q)) = %q, %v; want the number back", i, tc.n, back, err)
		}
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		in   string
		want wire.Number
		err  error
	}{
		0: {"6340564@imip.localhost", "6340564", nil},
		1: {"6340564@imip.localhost/laptop", "6340564", nil},
		2: {"0@imip.localhost", "0", nil},
		3: {"00123@IMIP.localhost", "00123", nil}, // domains compare after normalisation
		4: {strings.Repeat("1", wire.MaxNumberLen) + "@imip.localhost", wire.Number(strings.Repeat("1", wire.MaxNumberLen)), nil},
		// Not the gateway.
		5:  {"6340564@example.com", "", ErrNotGateway},
		6:  {"6340564@sub.imip.localhost", "", ErrNotGateway},
		7:  {"6340564@imip.localhost.evil", "", ErrNotGateway},
		8:  {"user@localhost", "", ErrNotGateway},
		9:  {"localhost", "", ErrNotGateway},
		10: {"imip.localhost@example.com", "", ErrNotGateway},
		// The gateway, but not a number.
		11: {"imip.localhost", "", ErrMalformed},
		12: {"imip.localhost/6340564", "", ErrMalformed},
		13: {"+6340564@imip.localhost", "", ErrMalformed},
		14: {"-1@imip.localhost", "", ErrMalformed},
		15: {"63_40564@imip.localhost", "", ErrMalformed},
		16: {"6340564abc@imip.localhost", "", ErrMalformed},
		17: {"alice@imip.localhost", "", ErrMalformed},
		18: {"0x1f@imip.localhost", "", ErrMalformed},
		19: {"१२३@imip.localhost", "", ErrMalformed}, // Devanagari digits
		20: {strings.Repeat("1", wire.MaxNumberLen+1) + "@imip.localhost", "", ErrMalformed},
		21: {"1.5@imip.localhost", "", ErrMalformed},
		22: {"alice\\40example.com@imip.localhost", "", ErrMalformed},
		23: {"１２３@imip.localhost", "", ErrMalformed}, // fullwidth digits
		24: {"123\\20@imip.localhost", "", ErrMalformed},
	}
	for i, tc := range tests {
		j, err := jid.Parse(tc.in)
		if err != nil {
			if tc.err == nil {
				t.Errorf("%d: jid.Parse(%q): %v", i, tc.in, err)
			}
			continue // hostile input stopped before it reaches Number
		}
		got, err := Number(j, gw)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%d: Number(%q) = %q, %v; want %q, %v", i, tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "roster: ") {
			t.Errorf("%d: Number(%q) error %q lacks the package prefix", i, tc.in, err)
		}
	}
}

func TestNumberZeroGateway(t *testing.T) {
	j := jid.MustParse("123@imip.localhost")
	if n, err := Number(j, jid.JID{}); !errors.Is(err, ErrNotGateway) {
		t.Errorf("Number(%q, zero gateway) = %q, %v; want ErrNotGateway", j, n, err)
	}
	if n, err := Number(jid.JID{}, gw); !errors.Is(err, ErrNotGateway) {
		t.Errorf("Number(zero JID) = %q, %v; want ErrNotGateway", n, err)
	}
}

func FuzzNumber(f *testing.F) {
	for _, s := range []string{"123@imip.localhost", "+1@imip.localhost", "imip.localhost", "１２３@imip.localhost"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := jid.Parse(s)
		if err != nil {
			return
		}
		n, err := Number(j, gw)
		if err != nil {
			return
		}
		if !n.Valid() {
			t.Fatalf("Number(%q) = %q: not digits only", s, n)
		}
		if back := JID(n, gw); !back.Equal(j.Bare()) {
			t.Fatalf("JID(Number(%q)) = %q, want %q", s, back, j.Bare())
		}
	})
}
