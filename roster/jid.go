package roster

import (
	"errors"
	"fmt"

	"imip-transport/imipside/wire"

	"mellium.im/xmpp/jid"
)

// Errors returned by [Number], wrapped with the offending address.
var (
	// ErrNotGateway means the address is not on the gateway's domain.
	ErrNotGateway = errors.New("roster: address is not on the gateway domain")
	// ErrMalformed means the address is on the gateway's domain but its
	// localpart is not an IMIP number (1 to wire.MaxNumberLen ASCII digits).
	ErrMalformed = errors.New("roster: localpart is not an IMIP number")
)

// JID returns the XMPP address of the IMIP contact n: the bare JID
// n@gateway, where gateway is the domainpart of gatewayDomain (any localpart
// or resourcepart of gatewayDomain is ignored).
//
// n must be a valid number (as returned by [wire.ParseNumber]).
// For an invalid number, or a zero gatewayDomain, JID returns the zero
// jid.JID, never the gateway's own address.
func JID(n wire.Number, gatewayDomain jid.JID) jid.JID {
	if !n.Valid() || gatewayDomain.Domainpart() == "" {
		return jid.JID{}
	}
	j, err := gatewayDomain.Domain().WithLocal(string(n))
	if err != nil {
		return jid.JID{}
	}
	return j
}

// Number returns the IMIP number addressed by j, the inverse of [JID].
//
// The domainpart of j must equal the domainpart of gatewayDomain
// (otherwise ErrNotGateway), and the localpart must be 1 to wire.MaxNumberLen ASCII
// digits with no sign or spaces (otherwise ErrMalformed).
// The resourcepart of j is ignored.
func Number(j jid.JID, gatewayDomain jid.JID) (wire.Number, error) {
	gw := gatewayDomain.Domainpart()
	if gw == "" || j.Domainpart() != gw {
		return "", fmt.Errorf("%w: %q", ErrNotGateway, j.Bare().String())
	}
	local := j.Localpart()
	if !wire.Number(local).Valid() {
		return "", fmt.Errorf("%w: %q", ErrMalformed, j.Bare().String())
	}
	return wire.Number(local), nil
}
