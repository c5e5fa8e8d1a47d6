package testenv

import (
	"testing"

	"imip-transport/internal/xmppserver"
)

// One server of each kind for the whole package, privileged component.
var (
	sharedProsody  = SharedProsody(xmppserver.ProsodyOptions{Privilege: true, LogLevel: "debug"})
	sharedEjabberd = SharedEjabberd(xmppserver.EjabberdOptions{Privilege: true})
)

func TestMain(m *testing.M) { Main(m, sharedProsody, sharedEjabberd) }
