package imipserver_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func TestDecodeAccounts(t *testing.T) {
	good := `
[[account]]
number = 1001001
password = "pw1"
nick = "alice"

[[account]]
number = "1002002"
password = "pw2"
`
	got, err := imipserver.DecodeAccounts(strings.NewReader(good))
	want := []imipserver.Account{
		{Number: "1001001", Password: "pw1", Nick: "alice"},
		{Number: "1002002", Password: "pw2"},
	}
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("DecodeAccounts = %v, %v; want %v", got, err, want)
	}

	for i, tc := range []struct{ name, in, wantErr string }{
		{"unknown key", "[[account]]\nnumber = 1\npassword = \"p\"\nnik = \"x\"\n", "unknown keys"},
		{"unknown table", "[server]\nport = 1\n", "unknown keys"},
		{"bad number", "[[account]]\nnumber = \"12a\"\npassword = \"p\"\n", "not a number"},
		{"negative number", "[[account]]\nnumber = -5\npassword = \"p\"\n", "negative"},
		{"float number", "[[account]]\nnumber = 1.5\npassword = \"p\"\n", "want integer or string"},
		{"no password", "[[account]]\nnumber = 1\n", "empty password"},
		{"quote in nick", "[[account]]\nnumber = 1\npassword = \"p\"\nnick = 'a\"b'\n", "nick"},
		{"duplicate", "[[account]]\nnumber = 1\npassword = \"p\"\n[[account]]\nnumber = \"1\"\npassword = \"q\"\n", "duplicate"},
		{"not toml", "[[account]\n", "accounts"},
	} {
		_, err := imipserver.DecodeAccounts(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%d %s: err = %v, want one containing %q", i, tc.name, err, tc.wantErr)
		}
	}
}

func TestLoadAccountsUpserts(t *testing.T) {
	st := imipserver.NewMemStore()
	in := "[[account]]\nnumber = 1001001\npassword = \"one\"\nnick = \"a\"\n"
	if n, err := imipserver.LoadAccounts(t.Context(), st, []byte(in)); n != 1 || err != nil {
		t.Fatalf("LoadAccounts = %d, %v", n, err)
	}
	in = strings.ReplaceAll(in, `"one"`, `"two"`)
	if _, err := imipserver.LoadAccounts(t.Context(), st, []byte(in)); err != nil {
		t.Fatal(err)
	}
	if a, err := st.Account(t.Context(), "1001001"); err != nil || a.Password != "two" {
		t.Errorf("after reload: %+v, %v", a, err)
	}
}

func TestDecodeSeedContacts(t *testing.T) {
	in := `
[[account]]
number = 1
password = "a"
contacts = [2, "3"]
[[account]]
number = 2
password = "b"
[[account]]
number = 3
password = "c"
`
	seed, err := imipserver.DecodeSeed(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := seed.Lists["1"]; len(got) != 2 || got[0] != "2" || got[1] != "3" {
		t.Errorf("contacts of 1 = %v, want [2 3]", got)
	}
	st := imipserver.NewMemStore()
	if n, err := imipserver.LoadAccounts(t.Context(), st, []byte(in)); n != 3 || err != nil {
		t.Fatalf("LoadAccounts = %d, %v", n, err)
	}
	for _, c := range []string{"2", "3"} {
		if ok, err := st.HasContact(t.Context(), "1", wire.Number(c)); !ok || err != nil {
			t.Errorf("HasContact(1, %s) = %v, %v", c, ok, err)
		}
	}
	if ok, _ := st.HasContact(t.Context(), "2", "1"); ok {
		t.Errorf("lists are one-directional, but 2 has 1")
	}
	for i, bad := range []string{
		"[[account]]\nnumber = 1\npassword = \"a\"\ncontacts = [9]\n",
		"[[account]]\nnumber = 1\npassword = \"a\"\ncontacts = [1]\n",
	} {
		if _, err := imipserver.DecodeSeed(strings.NewReader(bad)); err == nil {
			t.Errorf("%d: DecodeSeed accepted %q", i, bad)
		}
	}
}
