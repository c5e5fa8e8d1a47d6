package imipside

import (
	"strings"
	"testing"
)

// TestServiceDisplayName: the session keeps the HELO reply's
// ServiceDisplayName (the golden server calls itself "Odigo").
func TestServiceDisplayName(t *testing.T) {
	ts := login(t, nil)
	if got := ts.s.ServiceDisplayName(); got != "Odigo" {
		t.Errorf("ServiceDisplayName() = %q, want %q", got, "Odigo")
	}
}

func TestCleanServiceName(t *testing.T) {
	long := strings.Repeat("é", MaxServiceNameLen) // 2 bytes each
	tests := []struct{ in, want string }{
		0: {"Odigo", "Odigo"},
		1: {"  Yahoo!   IMIP \t Service ", "Yahoo! IMIP Service"},
		2: {"bad\x00\x07\x1b[31mname", "bad[31mname"},
		3: {"in\xffvalid", "invalid"},
		4: {"", ""},
		5: {" \t ", ""},
		6: {long, long[:MaxServiceNameLen]},
		7: {strings.Repeat("a", MaxServiceNameLen-1) + " b", strings.Repeat("a", MaxServiceNameLen-1)},
		8: {"a\u202eb", "ab"}, // a bidi override is a format character, not printable
	}
	for i, tt := range tests {
		if got := cleanServiceName(tt.in); got != tt.want {
			t.Errorf("%d: cleanServiceName(%q) = %q, want %q", i, tt.in, got, tt.want)
		}
		if got := cleanServiceName(tt.in); len(got) > MaxServiceNameLen {
			t.Errorf("%d: %d bytes, above the bound", i, len(got))
		}
	}
}
