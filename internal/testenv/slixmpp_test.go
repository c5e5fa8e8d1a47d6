package testenv

import (
	"strings"
	"testing"
	"time"
)

// slixmppSend logs in as argv[1] with password argv[2] to 127.0.0.1:argv[3]
// (STARTTLS, certificate not verified) and sends argv[5] to argv[4].
const slixmppSend = `
import asyncio, ssl, sys
import slixmpp

jid, password, port, to, body = sys.argv[1:6]

class Sender(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.sent = False
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", self.failed)

    async def start(self, event):
        self.send_presence()
        self.send_message(mto=to, mbody=body, mtype="chat")
        self.sent = True
        print("sent", flush=True)
        self.disconnect()

    def failed(self, event):
        print("auth failed", flush=True)
        self.disconnect()

x = Sender()
x.ssl_context.check_hostname = False
x.ssl_context.verify_mode = ssl.CERT_NONE
x.connect(("127.0.0.1", int(port)))
x.process(forever=False)
sys.exit(0 if x.sent else 1)
`

func TestSlixmppToGo(t *testing.T) {
	SkipUnavailable(t, SlixmppAvailable())
	srv := sharedProsody.Get(t)
	ctx := testCtx(t)
	for _, u := range []string{"sli.sender", "go.receiver"} {
		if err := srv.AddUser(ctx, u, "pw-"+u); err != nil {
			t.Fatal(err)
		}
	}
	recv := DialClient(ctx, t, srv, "go.receiver", "pw-go.receiver", "")
	inbox := ServeMessages(t, recv)
	if err := SendPresence(ctx, recv); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.C2SAddr(), ":")
	const body = "hello from slixmpp"
	began := time.Now()
	out, err := RunPython(ctx, t, 20*time.Second, slixmppSend,
		"sli.sender@"+srv.Domain(), "pw-sli.sender", port, recv.LocalAddr().String(), body)
	t.Logf("python run: %v", time.Since(began))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := Receive(t, inbox, 5*time.Second)
	if got.Body != body || !strings.HasPrefix(got.From, "sli.sender@"+srv.Domain()+"/") {
		t.Errorf("got %+v, want %q from sli.sender@%s/...", got, body, srv.Domain())
	}
}

func TestRunPythonTimeout(t *testing.T) {
	SkipUnavailable(t, SlixmppAvailable())
	began := time.Now()
	out, err := RunPython(testCtx(t), t, 300*time.Millisecond, "import time\nprint('start', flush=True)\ntime.sleep(30)\n")
	if err == nil {
		t.Fatalf("RunPython of a sleeping script returned nil error, output %q", out)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("RunPython took %v after a 300ms timeout", d)
	}
	if !strings.Contains(out, "start") {
		t.Errorf("output %q lacks the script's first line", out)
	}
}
