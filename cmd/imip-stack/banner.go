package main

import (
	"fmt"
	"io"
	"strings"

	"imip-transport/imipside/imipserver"
)

// bannerInfo is everything the instructions mention.
type bannerInfo struct {
	Dir         string
	C2SPort     int
	CompPort    int
	IMIPPort    int
	ProsodyPID  int
	ProsodyLog  string
	Users       []demoUser
	Accounts    []imipserver.Account
	AccountFile string
}

func (s *stack) bannerInfo() bannerInfo {
	return bannerInfo{
		Dir: s.dir, C2SPort: s.o.C2SPort, CompPort: s.o.CompPort, IMIPPort: s.o.IMIPPort,
		ProsodyPID: s.prosody.PID(), ProsodyLog: s.prosody.LogPath(),
		Users: demoUsers, Accounts: s.accounts, AccountFile: s.o.Accounts,
	}
}

// printBanner writes the instructions for using the running stack.
// The demo passwords are printed on purpose: they are throw-away
// credentials of a stack that listens on 127.0.0.1 only.
func printBanner(w io.Writer, b bannerInfo) {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	a, c := b.Accounts[0], b.Accounts[1]
	rule := strings.Repeat("=", 74)

	p("")
	p(rule)
	p(" imip-stack is running. State: %s. Press Ctrl-C to stop.", b.Dir)
	p(rule)
	p("")
	p("1. Connect any Jabber client (Gajim, Dino, Psi+, Profanity, ...)")
	p("     server 127.0.0.1, port %d, STARTTLS; the certificate is self-signed:", b.C2SPort)
	p("     accept it when the client asks (it is regenerated at every start).")
	for _, u := range b.Users {
		p("     account %-20s password %s", u.Name+"@"+domain, u.Password)
	}
	p("     (Gajim: Add account > Advanced > Connection: host 127.0.0.1, port %d.", b.C2SPort)
	p("      Profanity: /connect %s@%s server 127.0.0.1 port %d tls trust)", b.Users[0].Name, domain, b.C2SPort)
	p("")
	p("2. Register with the gateway")
	p("     Service discovery on %s (Gajim: Accounts > Discover Services),", component)
	p("     choose the IMIP gateway, then Register, and enter an IMIP number and")
	p("     password from the demo accounts (%s):", b.AccountFile)
	for _, acc := range b.Accounts {
		p("       number %-10s password %-16s nick %s", acc.Number, acc.Password, acc.Nick)
	}
	p("     mcabber (no registration dialog): /rawxml send <iq type='set' to='%s' id='r1'>", component)
	p("       <query xmlns='jabber:iq:register'><username>%s</username><password>%s</password></query></iq>", a.Number, a.Password)
	p("     (one line). Profanity, by ad-hoc command: /cmd exec register %s", component)
	p("       then in the form window: /field1 %s  /field2 %s  /form submit", a.Number, a.Password)
	p("     (/cmd list %s shows the other commands: status, reconnect, ...).", component)
	p("     The gateway logs in to imipd for you; your roster gets your IMIP contacts.")
	p("     %s@%s administers the gateway here: its command list also has the", b.Users[len(b.Users)-1].Name, domain)
	p("     admin commands (online users, statistics, ...; see docs/ADHOC.md).")
	p("")
	p("3. Talk")
	p("     Registered as %s, write to %s@%s (add it to your roster to see", a.Number, c.Number, component)
	p("     its presence). Register the other Jabber account as %s to answer, or", c.Number)
	p("     log in as %s by hand on IMIP (step 4).", c.Number)
	p("")
	p("4. Talk to imipd by hand (IMIP on 127.0.0.1:%d), in bash:", b.IMIPPort)
	p("     exec 3<>/dev/tcp/127.0.0.1/%d; cat <&3 & echo   # show what imipd sends", b.IMIPPort)
	p(`     blk() { local LC_ALL=C b; printf -v b '%%b\r\n%%s' "$2" "$3"; printf '%%s\r\n%%d\r\n%%s' "$1" "${#b}" "$b" >&3; }`)
	p(`     blk HELO 'ID: 1001\r\nProtocol: IMIP/1.0\r\n'   # the reply ends with the salt, a number`)
	p(`     salt=PASTE-IT; blk 'LOGN %s' 'ID: 1002\r\nAuth-Type: imip-md5\r\n' "$(printf %%s "$salt" '%s' | md5sum | cut -c1-32)"`, c.Number, c.Password)
	p(`     blk 'STAT ONLINE' 'ID: 1003\r\n'`)
	p(`     blk MESG 'ID: 1004\r\nTo: %s\r\nACK-Type: errors-only\r\n' 'hello from bash'`, a.Number)
	p(`     blk DISC 'ID: 1005\r\n'; exec 3>&-`)
	p("     Stay below 2 minutes between blocks (keep-alive), or send blk PING 'ID: 1006\\r\\n'.")
	p("")
	p("Prosody: PID %d, log %s; component port %d.", b.ProsodyPID, b.ProsodyLog, b.CompPort)
	p("Delete %s to start afresh.", b.Dir)
	p(rule)
	_, _ = io.WriteString(w, sb.String())
}
