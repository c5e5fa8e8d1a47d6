package wire

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseBuddyList(t *testing.T) {
	cases := []struct {
		in   string
		want []Buddy
		ok   bool
	}{
		{`7744387 "mawis76",1234567 "other"`, []Buddy{{"7744387", "mawis76"}, {"1234567", "other"}}, true},
		{`7744387 "mawis76", 1234567 "other"`, []Buddy{{"7744387", "mawis76"}, {"1234567", "other"}}, true},
		{`7744387 "mawis76" ,  1234567 "other"`, []Buddy{{"7744387", "mawis76"}, {"1234567", "other"}}, true},
		{`7744387,1234567`, []Buddy{{"7744387", ""}, {"1234567", ""}}, true},
		{`7744387, 1234567 "b"`, []Buddy{{"7744387", ""}, {"1234567", "b"}}, true},
		{`42`, []Buddy{{"42", ""}}, true},
		{`42 ""`, []Buddy{{"42", ""}}, true},
		{`42 "Smith, John",43 "x"`, []Buddy{{"42", "Smith, John"}, {"43", "x"}}, true},
		{`42 "the "boss"",43`, []Buddy{{"42", `the "boss"`}, {"43", ""}}, true},
		{`42 "a"b"`, []Buddy{{"42", `a"b`}}, true},
		{`42 "ünï cödé"`, []Buddy{{"42", "ünï cödé"}}, true},
		{``, nil, true},
		{`   `, nil, true},
		{`42,`, nil, false},
		{`42, `, nil, false},
		{`42 "a",`, nil, false},
		{`,42`, nil, false},
		{`42,,43`, nil, false},
		{`abc "x"`, nil, false},
		{`12a "x"`, nil, false},
		{`-12 "x"`, nil, false},
		{`42 "unterminated`, nil, false},
		// A nickname ends only at a quote before a comma or the end, so a
		// missing comma makes one long nickname rather than an error.
		{`42 "a" 43 "b"`, []Buddy{{"42", `a" 43 "b`}}, true},
		{`42 nick`, nil, false},
		{strings.Repeat("1", 21), nil, false},
	}
	for i, c := range cases {
		got, err := ParseBuddyList(c.in)
		if (err == nil) != c.ok {
			t.Errorf("%d %q: err %v, want ok %v", i, c.in, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Errorf("%d %q: %v does not match ErrBadValue", i, c.in, err)
			}
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%d %q: %q, want %q", i, c.in, got, c.want)
		}
	}
}

func TestParseBuddyListLenient(t *testing.T) {
	hostile := FormatBuddyList([]Buddy{{"42", "a"}, {"43", `x", y`}, {"44", "b"}})
	cases := []struct {
		in     string
		want   []Buddy
		errors bool
	}{
		0: {`7744387 "mawis76",1234567 "other"`, []Buddy{{"7744387", "mawis76"}, {"1234567", "other"}}, false},
		1: {``, nil, false},
		2: {`42 "Smith, John",43 "x"`, []Buddy{{"42", "Smith, John"}, {"43", "x"}}, false},
		// A contact's nickname holding `", ` (FormatBuddyList does not
		// escape it): that contact keeps its number and the head of its
		// nickname, the others are intact.
		3:  {hostile, []Buddy{{"42", "a"}, {"43", "x"}, {"44", "b"}}, true},
		4:  {`42 "a", x",43 "b"`, []Buddy{{"42", "a"}, {"43", "b"}}, true},
		5:  {`42,`, []Buddy{{"42", ""}}, true},
		6:  {`42, `, []Buddy{{"42", ""}}, true},
		7:  {`,42`, []Buddy{{"42", ""}}, true},
		8:  {`42,,43`, []Buddy{{"42", ""}, {"43", ""}}, true},
		9:  {`abc "x",43`, []Buddy{{"43", ""}}, true},
		10: {`12a "x",43 "y"`, []Buddy{{"43", "y"}}, true},
		11: {`42 nick,43`, []Buddy{{"43", ""}}, true},
		12: {`42 "unterminated`, nil, true},
		13: {`41,42 "unterminated,43`, []Buddy{{"41", ""}, {"43", ""}}, true},
		14: {strings.Repeat("1", 21) + `,42`, []Buddy{{"42", ""}}, true},
		15: {`x`, nil, true},
		16: {`,,,`, nil, true},
	}
	for i, c := range cases {
		got, err := ParseBuddyListLenient(c.in)
		if (err != nil) != c.errors {
			t.Errorf("%d %q: err %v, want error %v", i, c.in, err, c.errors)
		}
		if err != nil && !errors.Is(err, ErrBadValue) {
			t.Errorf("%d %q: %v does not match ErrBadValue", i, c.in, err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%d %q: %q, want %q", i, c.in, got, c.want)
		}
		// The strict parser fails exactly where the lenient one reports
		// an error, and agrees with it otherwise.
		strict, serr := ParseBuddyList(c.in)
		if (serr != nil) != c.errors || (serr == nil && !slices.Equal(strict, got)) {
			t.Errorf("%d %q: strict %q, %v; lenient %q, %v", i, c.in, strict, serr, got, err)
		}
	}
}

func FuzzParseBuddyList(f *testing.F) {
	for _, s := range []string{
		`7744387 "mawis76",1234567 "other"`,
		`7744387 "mawis76", 1234567 "other"`,
		`42 "Smith, John",43 "x"`,
		`42 "the "boss"",43`,
		`42 "a", x",43 "b"`,
		`42 "a",43 "x", y",44 "b"`,
		`42,,43`,
		`,42`,
		`42 "unterminated`,
		`42 nick,43`,
		strings.Repeat("1", 21) + `,42`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		strict, serr := ParseBuddyList(s)
		lenient, lerr := ParseBuddyListLenient(s)
		if (serr == nil) != (lerr == nil) {
			t.Fatalf("%q: strict err %v, lenient err %v", s, serr, lerr)
		}
		if serr == nil && !slices.Equal(strict, lenient) {
			t.Fatalf("%q: strict %q, lenient %q", s, strict, lenient)
		}
		if lerr != nil && !errors.Is(lerr, ErrBadValue) {
			t.Fatalf("%q: %v does not match ErrBadValue", s, lerr)
		}
		if n := strings.Count(s, ",") + 1; len(lenient) > n {
			t.Fatalf("%q: %d entries from %d comma-separated parts", s, len(lenient), n)
		}
		for _, b := range lenient {
			if !b.Number.Valid() {
				t.Fatalf("%q: invalid number %q", s, b.Number)
			}
		}
	})
}

func TestFormatBuddyListRoundTrip(t *testing.T) {
	lists := [][]Buddy{
		{{"7744387", "mawis76"}, {"1234567", "other"}},
		{{"1", ""}, {"2", "b"}, {"3", ""}},
		{{"42", "Smith, John"}, {"43", `say "hi"`}},
		{{"42", " spaced "}},
	}
	wants := []string{
		`7744387 "mawis76",1234567 "other"`,
		`1,2 "b",3`,
		`42 "Smith, John",43 "say "hi""`,
		`42 " spaced "`,
	}
	for i, l := range lists {
		s := FormatBuddyList(l)
		if s != wants[i] {
			t.Errorf("%d FormatBuddyList = %q, want %q", i, s, wants[i])
		}
		back, err := ParseBuddyList(s)
		if err != nil || !slices.Equal(back, l) {
			t.Errorf("%d round trip %q: %q, %v", i, s, back, err)
		}
	}
	if s := FormatBuddyList(nil); s != "" {
		t.Errorf("FormatBuddyList(nil) = %q", s)
	}
}

func TestFrom(t *testing.T) {
	cases := []struct {
		in   string
		num  Number
		nick string
		ok   bool
	}{
		{`7744387 "mawis76"`, "7744387", "mawis76", true},
		{`7744387`, "7744387", "", true},
		{` 7744387  "mawis76" `, "7744387", "mawis76", true},
		{`7744387 ""`, "7744387", "", true},
		{`7744387 "a "quoted" nick, ok"`, "7744387", `a "quoted" nick, ok`, true},
		{`7744387 mawis76`, "", "", false},
		{`7744387 "mawis76`, "", "", false},
		{`7744387 "`, "", "", false},
		{`"mawis76"`, "", "", false},
		{``, "", "", false},
		{`77a`, "", "", false},
	}
	for i, c := range cases {
		num, nick, err := ParseFrom(c.in)
		if (err == nil) != c.ok || num != c.num || nick != c.nick {
			t.Errorf("%d ParseFrom(%q) = %q, %q, %v", i, c.in, num, nick, err)
		}
		if err != nil && !errors.Is(err, ErrBadValue) {
			t.Errorf("%d ParseFrom(%q): %v does not match ErrBadValue", i, c.in, err)
		}
	}
	if got := FormatFrom("7744387", "mawis76"); got != `7744387 "mawis76"` {
		t.Errorf("FormatFrom = %q", got)
	}
	if got := FormatFrom("7744387", ""); got != `7744387` {
		t.Errorf("FormatFrom without nick = %q", got)
	}
	num, nick, err := ParseFrom(FormatFrom("1", `x "y" z`))
	if err != nil || num != "1" || nick != `x "y" z` {
		t.Errorf("round trip: %q, %q, %v", num, nick, err)
	}
}

func TestTimo(t *testing.T) {
	want := time.Date(2001, 3, 14, 9, 26, 53, 0, time.UTC)
	cases := []struct {
		headers []Header
		ok      bool
	}{
		{hd("Timo", "2001-03-14T09:26:53Z"), true},
		{hd("Time", "2001-03-14T09:26:53Z"), true},
		{hd("timo", "2001-03-14T09:26:53Z"), true},
		{hd("Timo", "garbage", "Time", "2001-03-14T09:26:53Z"), true},
		{hd("Timo", "2001-03-14T09:26:53+01:00"), false},
		{hd("Timo", "2001-02-30T09:26:53Z"), false},
		{hd("Timo", "2001-03-14 09:26:53Z"), false},
		{hd("Timo", ""), false},
		{hd("ID", "1"), false},
		{nil, false},
	}
	for i, c := range cases {
		got, ok := MessageTime(&Block{Type: "MESG", Headers: c.headers})
		if ok != c.ok || (ok && !got.Equal(want)) || (ok && got.Location() != time.UTC) {
			t.Errorf("%d MessageTime(%q) = %v, %v", i, c.headers, got, ok)
		}
	}
	if _, err := ParseTimo("yesterday"); !errors.Is(err, ErrBadValue) {
		t.Errorf("ParseTimo(yesterday) = %v", err)
	}
	local := time.Date(2001, 3, 14, 10, 26, 53, 999, time.FixedZone("CET", 3600))
	if got := FormatTimo(local); got != "2001-03-14T09:26:53Z" {
		t.Errorf("FormatTimo = %q", got)
	}
	if got, err := ParseTimo(FormatTimo(want)); err != nil || !got.Equal(want) {
		t.Errorf("round trip: %v, %v", got, err)
	}
}

func TestParseNumber(t *testing.T) {
	good := []string{"0", "6340564", "007", strings.Repeat("9", MaxNumberLen)}
	bad := []string{"", " 1", "1 ", "+1", "-1", "1.0", "1e3", "0x1", "١٢", "１２", "12\x00", "\n12",
		strings.Repeat("9", MaxNumberLen+1), strings.Repeat("1", 1<<16)}
	for i, s := range good {
		if n, err := ParseNumber(s); err != nil || string(n) != s || !n.Valid() || n.String() != s {
			t.Errorf("good %d ParseNumber(%q) = %q, %v", i, s, n, err)
		}
	}
	for i, s := range bad {
		n, err := ParseNumber(s)
		if !errors.Is(err, ErrBadValue) || n != "" {
			t.Errorf("bad %d ParseNumber(%q) = %q, %v", i, s, n, err)
		}
		if Number(s).Valid() {
			t.Errorf("bad %d Number(%q).Valid() = true", i, s)
		}
		if err != nil && len(err.Error()) > 100 {
			t.Errorf("bad %d: error message of %d bytes echoes the input", i, len(err.Error()))
		}
	}
	var zero Number
	if zero.Valid() {
		t.Error("the zero Number is valid")
	}
}

func TestParseCode(t *testing.T) {
	cases := []struct {
		in   string
		code Code
		ok   bool
		succ bool
	}{
		{"600", CodeOK, true, true},
		{" 600 ", CodeOK, true, true},
		{"601", 601, true, true},
		{"699", 699, true, true},
		{"800", CodeNoStatus, true, false},
		{"801", CodeUnknownStatus, true, false},
		{"810", CodeWrongPassword, true, false},
		{"811", CodeIllegalUser, true, false},
		{"812", CodeNotAllowed, true, false},
		{"813", CodeMalformedBlock, true, false},
		{"899", 899, true, false},
		{"700", 700, true, false},
		{"100", 100, true, false},
		{"099", 0, false, false},
		{"", 0, false, false},
		{"60", 0, false, false},
		{"6000", 0, false, false},
		{"+60", 0, false, false},
		{"-60", 0, false, false},
		{"6a0", 0, false, false},
		{"OK", 0, false, false},
	}
	for i, c := range cases {
		got, err := ParseCode(c.in)
		if (err == nil) != c.ok || got != c.code {
			t.Errorf("%d ParseCode(%q) = %d, %v", i, c.in, got, err)
			continue
		}
		if err != nil && !errors.Is(err, ErrBadValue) {
			t.Errorf("%d ParseCode(%q): %v does not match ErrBadValue", i, c.in, err)
		}
		if err == nil && got.OK() != c.succ {
			t.Errorf("%d Code(%d).OK() = %v, want %v", i, got, got.OK(), c.succ)
		}
	}
	for i, c := range []struct {
		code Code
		want string
	}{
		{CodeOK, "600 (ok)"}, {650, "650 (ok)"}, {CodeWrongPassword, "810 (wrong password)"}, {877, "877 (failure)"},
	} {
		if got := c.code.String(); got != c.want {
			t.Errorf("%d String() = %q, want %q", i, got, c.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	cases := []struct {
		in   string
		want Status
		ok   bool
	}{
		{"ONLINE", StatusOnline, true},
		{"online", StatusOnline, true},
		{" Away ", StatusAway, true},
		{"BUSY", StatusBusy, true},
		{"offline", StatusOffline, true},
		{"", "", false},
		{"INVISIBLE", "", false},
		{"ONLINE NOW", "", false},
		{"onlıne", "", false}, // dotless i: strings.ToUpper would make it ONLINE
		{"ONLINE\x00", "", false},
	}
	for i, c := range cases {
		got, ok := ParseStatus(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("%d ParseStatus(%q) = %q, %v", i, c.in, got, ok)
		}
	}
}
