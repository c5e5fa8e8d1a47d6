package wire

import "testing"

func TestBlockAccessors(t *testing.T) {
	b := Block{Type: "LIST", Arg: "ADD 6340564", Headers: hd("ID", "1005", "reference", "1002", "From", "007", "X", "12a", "Y", "")}
	if v, ok := b.Lookup("id"); !ok || v != "1005" {
		t.Errorf("Lookup(id) = %q, %v", v, ok)
	}
	if v, ok := b.Lookup("Missing"); ok || v != "" {
		t.Errorf("Lookup(Missing) = %q, %v", v, ok)
	}
	if v, ok := b.Lookup("Y"); !ok || v != "" {
		t.Errorf("Lookup(Y) = %q, %v: an empty header is present", v, ok)
	}
	if got := b.Get("FROM"); got != "007" {
		t.Errorf("Get(FROM) = %q", got)
	}
	if n, ok := b.ID(); !ok || n != 1005 {
		t.Errorf("ID() = %d, %v", n, ok)
	}
	if n, ok := b.Reference(); !ok || n != 1002 {
		t.Errorf("Reference() = %d, %v", n, ok)
	}
	for i, name := range []string{"X", "Y", "Missing"} {
		if n, ok := b.Uint(name); ok {
			t.Errorf("%d Uint(%s) = %d, true", i, name, n)
		}
	}
	if first, rest := b.Word(); first != "ADD" || rest != "6340564" {
		t.Errorf("Word() = %q, %q", first, rest)
	}
	if got := b.TypeLine(); got != "LIST ADD 6340564" {
		t.Errorf("TypeLine() = %q", got)
	}
	b.Set("FROM", "42")
	if b.Headers[2] != (Header{"From", "42"}) || len(b.Headers) != 5 {
		t.Errorf("Set replaced wrongly: %q", b.Headers)
	}
	b.Set("To", "43")
	if len(b.Headers) != 6 || b.Headers[5] != (Header{"To", "43"}) {
		t.Errorf("Set did not append: %q", b.Headers)
	}
	b.Reset()
	if b.Type != "" || b.Arg != "" || len(b.Headers) != 0 || len(b.Body) != 0 || b.NoEmptyLine || cap(b.Headers) == 0 {
		t.Errorf("Reset left %+v (cap %d)", b, cap(b.Headers))
	}
	if got := (&Block{Type: "PING"}).TypeLine(); got != "PING" {
		t.Errorf("TypeLine() = %q", got)
	}
}

func TestBlockUintHostile(t *testing.T) {
	cases := []struct {
		v  string
		n  uint64
		ok bool
	}{
		{"0", 0, true},
		{"18446744073709551615", 0, false}, // 20 digits: refused by length
		{"9999999999999999999", 9999999999999999999, true},
		{"+1", 0, false},
		{"-1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"", 0, false},
		{"0x1", 0, false},
	}
	for i, c := range cases {
		b := Block{Headers: hd("ID", c.v)}
		n, ok := b.ID()
		if n != c.n || ok != c.ok {
			t.Errorf("%d ID(%q) = %d, %v; want %d, %v", i, c.v, n, ok, c.n, c.ok)
		}
	}
}
