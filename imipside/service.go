package imipside

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxServiceNameLen bounds, in bytes, the service name kept from a server's
// HELO reply (ServiceDisplayName): a longer one is cut at a character
// boundary. The name ends up in XMPP (the gateway's disco identity and
// vCard), where it is only a label.
const MaxServiceNameLen = 64

// cleanServiceName makes a server's ServiceDisplayName safe to show: bytes
// that are not UTF-8 and control characters are dropped, runs of white space
// become one space, the ends are trimmed, and the result is cut to
// MaxServiceNameLen bytes.
func cleanServiceName(v string) string {
	var b strings.Builder
	space := false
	for _, r := range v {
		switch {
		case r == utf8.RuneError:
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case !unicode.IsPrint(r):
			continue
		}
		n := utf8.RuneLen(r)
		if space {
			n++
		}
		if b.Len()+n > MaxServiceNameLen {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}
