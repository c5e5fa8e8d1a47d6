package wire

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// MaxNumberLen is the longest IMIP number accepted.
const MaxNumberLen = 20

// Number is an IMIP user number: decimal digits only. Build one with
// ParseNumber; the zero value is not a valid number.
type Number string

// ParseNumber returns s as a Number, or an error wrapping ErrBadValue when s
// is empty, longer than MaxNumberLen, or holds anything but ASCII digits.
func ParseNumber(s string) (Number, error) {
	if !Number(s).Valid() {
		return "", protoErr(ErrBadValue, "number "+strconv.Quote(clip(s)))
	}
	return Number(s), nil
}

// Valid reports whether n is 1 to MaxNumberLen ASCII digits, as ParseNumber
// requires. It does not allocate.
func (n Number) Valid() bool {
	if n == "" || len(n) > MaxNumberLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the number's digits.
func (n Number) String() string { return string(n) }

// Buddy is one entry of a contact list: a number and its nickname.
type Buddy struct {
	Number Number
	Nick   string
}

// ParseFrom parses a From value: `<number>` or `<number> "<nick>"`.
func ParseFrom(s string) (Number, string, error) {
	s = strings.TrimSpace(s)
	num, rest, _ := strings.Cut(s, " ")
	n, err := ParseNumber(num)
	if err != nil {
		return "", "", err
	}
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return n, "", nil
	}
	if len(rest) < 2 || rest[0] != '"' || rest[len(rest)-1] != '"' {
		return "", "", protoErr(ErrBadValue, "nickname "+strconv.Quote(clip(rest)))
	}
	return n, rest[1 : len(rest)-1], nil
}

// FormatFrom returns `<number> "<nick>"`, or the number alone when nick is
// empty.
func FormatFrom(n Number, nick string) string {
	if nick == "" {
		return string(n)
	}
	return string(n) + ` "` + nick + `"`
}

// ParseBuddyList parses a Buddy header: comma-separated entries, each a
// number optionally followed by its nickname in double quotes. Spaces after
// commas and entries without a nickname are accepted; a nickname may itself
// hold commas and quotes, since it ends only at a quote followed by a comma
// or the end. Any malformed entry makes the whole header an error; see
// ParseBuddyListLenient for a parser that skips it.
func ParseBuddyList(s string) ([]Buddy, error) {
	return parseBuddyList(s, false)
}

// ParseBuddyListLenient parses a Buddy header like ParseBuddyList but skips
// what it cannot read: a malformed entry is dropped up to the next comma and
// parsing goes on after it. It returns the entries it could read and the
// first error met (nil when the header is well formed, and then the result
// equals ParseBuddyList's). A nickname that holds `", ` (which
// FormatBuddyList does not escape) costs the entry its nickname's tail, not
// the whole list.
func ParseBuddyListLenient(s string) ([]Buddy, error) {
	return parseBuddyList(s, true)
}

func parseBuddyList(s string, lenient bool) ([]Buddy, error) {
	var out []Buddy
	var first error
	s = strings.TrimSpace(s)
	for s != "" {
		b, rest, err := nextBuddy(s)
		if err == nil {
			out = append(out, b)
			if rest == "" {
				break
			}
			// rest starts with ','.
			if s = strings.TrimLeft(rest[1:], " "); s == "" {
				err = protoErr(ErrBadValue, "buddy list ends with ','")
			}
		}
		if err != nil {
			if !lenient {
				return nil, err
			}
			if first == nil {
				first = err
			}
			i := strings.IndexByte(s, ',')
			if i < 0 {
				break
			}
			s = strings.TrimLeft(s[i+1:], " ")
		}
	}
	return out, first
}

// nextBuddy parses the entry at the start of s. rest is what follows it:
// "" or a string starting with ','.
func nextBuddy(s string) (b Buddy, rest string, err error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := ParseNumber(s[:i])
	if err != nil {
		return b, "", err
	}
	s = strings.TrimLeft(s[i:], " ")
	nick := ""
	if strings.HasPrefix(s, `"`) {
		end := -1
		for j := 1; j < len(s); j++ {
			if s[j] != '"' {
				continue
			}
			after := strings.TrimLeft(s[j+1:], " ")
			if after == "" || after[0] == ',' {
				end = j
				break
			}
		}
		if end < 0 {
			return b, "", protoErr(ErrBadValue, "unterminated nickname in buddy list")
		}
		nick = s[1:end]
		s = strings.TrimLeft(s[end+1:], " ")
	}
	if s != "" && s[0] != ',' {
		return b, "", protoErr(ErrBadValue, "buddy list: expected ',' at "+strconv.Quote(clip(s)))
	}
	return Buddy{Number: n, Nick: nick}, s, nil
}

// FormatBuddyList returns the Buddy header value for list, entries joined by
// a comma without spaces, as the server sends it.
func FormatBuddyList(list []Buddy) string {
	var sb strings.Builder
	for i, b := range list {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(FormatFrom(b.Number, b.Nick))
	}
	return sb.String()
}

// TimoLayout is the layout of the Timo header: UTC, seconds precision.
const TimoLayout = "2006-01-02T15:04:05Z"

// ParseTimo parses a Timo (or Time) header value.
func ParseTimo(s string) (time.Time, error) {
	t, err := time.Parse(TimoLayout, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, protoErr(ErrBadValue, "timestamp "+strconv.Quote(clip(s)))
	}
	return t, nil
}

// FormatTimo formats t in UTC for the Timo header.
func FormatTimo(t time.Time) string { return t.UTC().Format(TimoLayout) }

// MessageTime returns the time of a server MESG from its Timo header, or its
// Time header, and false when neither holds a valid timestamp.
func MessageTime(b *Block) (time.Time, bool) {
	for _, name := range [...]string{HdrTimo, HdrTime} {
		if v, ok := b.Lookup(name); ok {
			if t, err := ParseTimo(v); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// AuthDigest returns the LOGN body: the lowercase hex MD5 of the salt text
// followed by the password bytes.
func AuthDigest(salt, password string) string {
	h := md5.New()
	h.Write([]byte(salt))
	h.Write([]byte(password))
	return hex.EncodeToString(h.Sum(nil))
}

// Code is an ACK code.
type Code int

// ACK codes.
const (
	CodeOK             Code = 600
	CodeNoStatus       Code = 800
	CodeUnknownStatus  Code = 801
	CodeWrongPassword  Code = 810
	CodeIllegalUser    Code = 811
	CodeNotAllowed     Code = 812
	CodeMalformedBlock Code = 813
	// CodeRecipientFull [ours]: the recipient holds too many stored
	// messages or pending requests (from this sender, or in all); try later.
	CodeRecipientFull Code = 814
	// CodeTooFast [ours]: the sender exceeds the server's rate; try later.
	CodeTooFast Code = 815
)

// ParseCode parses the argument of an ACK block.
func ParseCode(s string) (Code, error) {
	s = strings.TrimSpace(s)
	if len(s) != 3 {
		return 0, protoErr(ErrBadValue, "ACK code "+strconv.Quote(clip(s)))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 {
		return 0, protoErr(ErrBadValue, "ACK code "+strconv.Quote(clip(s)))
	}
	return Code(n), nil
}

// OK reports whether c means success: every 6xx code does. Unknown 8xx codes
// are failures.
func (c Code) OK() bool { return c >= 600 && c < 700 }

// String returns the code and its meaning.
func (c Code) String() string {
	var m string
	switch c {
	case CodeOK:
		m = "ok"
	case CodeNoStatus:
		m = "status missing"
	case CodeUnknownStatus:
		m = "unknown status"
	case CodeWrongPassword:
		m = "wrong password"
	case CodeIllegalUser:
		m = "illegal user id"
	case CodeNotAllowed:
		m = "block not allowed"
	case CodeMalformedBlock:
		m = "malformed block"
	default:
		if c.OK() {
			m = "ok"
		} else {
			m = "failure"
		}
	}
	return strconv.Itoa(int(c)) + " (" + m + ")"
}

// Status is a presence value of a STAT block.
type Status string

// Presence values.
const (
	StatusOnline  Status = "ONLINE"
	StatusAway    Status = "AWAY"
	StatusBusy    Status = "BUSY"
	StatusOffline Status = "OFFLINE"
)

// ParseStatus returns the status named by s, matched case-insensitively
// (ASCII only: "online" matches, a look-alike such as "onlıne" does not).
// Spaces around s are ignored.
func ParseStatus(s string) (Status, bool) {
	s = strings.TrimSpace(s)
	for _, st := range [...]Status{StatusOnline, StatusAway, StatusBusy, StatusOffline} {
		if asciiEqualFold(s, string(st)) {
			return st, true
		}
	}
	return "", false
}

// asciiEqualFold reports whether s equals upper, an upper-case ASCII string,
// ignoring ASCII case only.
func asciiEqualFold(s, upper string) bool {
	if len(s) != len(upper) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}
