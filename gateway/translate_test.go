package gateway

import (
	"errors"
	"testing"

	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// One table maps IMIP codes to errors: the three places that report a code
// (a refused message, a refused registration, a login refused later) agree
// with it, and every entry is complete.
func TestCodeTable(t *testing.T) {
	for c, e := range codeTable {
		if e.typ == "" || e.cond == "" || e.text == "" || e.loginCond == "" || e.authCond == "" || e.loginText == "" {
			t.Errorf("code %d: incomplete entry %+v", c, e)
		}
		if got := ackError(c); got.Condition != e.cond || got.Type != e.typ || got.Text[""] != e.text {
			t.Errorf("ackError(%d) = %+v, want the table's %s", c, got, e.cond)
		}
		var xe *xmppside.Error
		if err := registerError(&imipside.LoginError{Code: c}); !errors.As(err, &xe) || xe.Condition != e.loginCond || xe.Text != e.loginText {
			t.Errorf("registerError(%d) = %v, want the table's %s %q", c, err, e.loginCond, e.loginText)
		}
		if se, text := loginError(c); se.Condition != e.authCond || se.Type != stanza.Auth || text != e.loginText {
			t.Errorf("loginError(%d) = %+v %q, want the table's %s", c, se, text, e.authCond)
		}
	}
	// 811 names a number nobody has: item-not-found for a message, and for
	// a login not-acceptable (registration) or not-authorized (later).
	if ackError(wire.CodeIllegalUser).Condition != stanza.ItemNotFound {
		t.Error("811 for a message is not item-not-found")
	}
	if u := ackError(wire.Code(899)); u.Condition != stanza.UndefinedCondition {
		t.Errorf("unknown code: %+v", u)
	}
}
