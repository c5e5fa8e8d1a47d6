package main

import (
	"strings"
	"testing"

	"imip-transport/imipside/imipserver"
)

func TestPrintBanner(t *testing.T) {
	var out strings.Builder
	printBanner(&out, bannerInfo{
		Dir: "/x/.stack", C2SPort: 15222, CompPort: 15347, IMIPPort: 21319, ProsodyPID: 4242,
		ProsodyLog: "/x/.stack/prosody/prosody.log", Users: demoUsers, AccountFile: "acc.toml",
		Accounts: []imipserver.Account{
			{Number: "1001001", Password: "pa", Nick: "alice"},
			{Number: "1002002", Password: "pb", Nick: "bob"},
		},
	})
	got := out.String()
	for i, want := range []string{
		"server 127.0.0.1, port 15222, STARTTLS", "self-signed",
		"alice@localhost", "alice-demo", "bob@localhost", "bob-demo",
		"Service discovery on imip.localhost",
		"/rawxml send <iq type='set' to='imip.localhost'", "<username>1001001</username><password>pa</password>",
		"Profanity, by ad-hoc command: /cmd exec register imip.localhost",
		"/field1 1001001  /field2 pa  /form submit", "/cmd list imip.localhost",
		"bob@localhost administers the gateway here",
		"number 1001001", "password pa", "number 1002002", "password pb",
		"write to 1002002@imip.localhost",
		"/dev/tcp/127.0.0.1/21319", "blk 'LOGN 1002002'", `'pb' | md5sum`, "To: 1001001",
		"PID 4242", "Delete /x/.stack",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%d: banner lacks %q:\n%s", i, want, got)
		}
	}
}
