package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"

	"imip-transport/xmppside"
)

// A refused message comes back with an excerpt of its body, never the
// whole of it: a long body could make the error too large for the
// component stream.
func TestBounceExcerpt(t *testing.T) {
	long := strings.Repeat("\t", 201) + strings.Repeat("\u00e9", 100) // the cut falls inside a character
	tests := []struct {
		name, body, want string
	}{
		0: {"short", "hi", "hi"},
		1: {"exactly the limit", strings.Repeat("a", maxBounceExcerpt), strings.Repeat("a", maxBounceExcerpt)},
		2: {"one byte over", strings.Repeat("a", maxBounceExcerpt+1), strings.Repeat("a", maxBounceExcerpt) + "…"},
		3: {"cut on a character", long, strings.Repeat("\t", 201) + strings.Repeat("\u00e9", 27) + "…"},
		4: {"huge", strings.Repeat("\t", 200000), strings.Repeat("\t", maxBounceExcerpt) + "…"},
	}
	for i, tc := range tests {
		h := newHarness(t, "")
		mark := h.x.mark()
		h.chat("m1", bobHW, cj("100"), "chat", tc.body) // bob is not registered
		m := h.x.waitMessage(t, mark, "message error", func(m xmppside.Message) bool { return m.Type == "error" })
		if m.Body != tc.want {
			t.Errorf("%d %s: bounce body of %d bytes %.40q..., want %d bytes %.40q...", i, tc.name, len(m.Body), m.Body, len(tc.want), tc.want)
		}
		if !utf8.ValidString(m.Body) {
			t.Errorf("%d %s: bounce body is not valid UTF-8", i, tc.name)
		}
	}
}
