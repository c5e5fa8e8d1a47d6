package imipside

import (
	"errors"

	"imip-transport/imipside/wire"
)

// Sentinel errors.
var (
	// ErrWrongPassword matches a *LoginError with code 810.
	ErrWrongPassword = errors.New("imipside: wrong password")
	// ErrIllegalUser matches a *LoginError or *AckError with code 811:
	// the number is not a valid IMIP user id.
	ErrIllegalUser = errors.New("imipside: illegal user id")
	// ErrClosed is returned by methods of a session that has ended.
	ErrClosed = errors.New("imipside: session closed")
	// ErrTimeout is why a session ends when a keep-alive PING got no ACK
	// within Keep-Alive: the connection is dead.
	ErrTimeout = errors.New("imipside: keep-alive timeout: connection dead")
	// ErrBusy is returned by a Send method when Config.MaxOutstanding
	// requests already wait for their outcome, or when the block does not
	// fit in the outgoing queue (Config.MaxQueue). Nothing was queued.
	ErrBusy = errors.New("imipside: busy")
	// ErrProtocol matches every error by which the server's breach of
	// IMIP ends a session or fails a login: a block the wire codec
	// refuses (errors.As finds the *wire.Error too), an ACK without a
	// valid code, a HELO reply without a salt or with an Auth-Type other
	// than imip-md5, no answer to HELO or LOGN within 64 blocks.
	ErrProtocol = errors.New("imipside: protocol violation by the server")
)

// AckError is a failure ACK (8xx) from the server in answer to a request.
type AckError struct {
	Code wire.Code
}

func (e *AckError) Error() string { return "imipside: server answered ACK " + e.Code.String() }

// Is reports whether target is the sentinel error for e's code.
func (e *AckError) Is(target error) bool { return codeIs(e.Code, target) }

// LoginError is a refused login: the server answered the LOGN (or the HELO)
// with an ACK other than success.
type LoginError struct {
	Code wire.Code
}

func (e *LoginError) Error() string { return "imipside: login refused: ACK " + e.Code.String() }

// Is makes errors.Is(err, ErrWrongPassword) true for code 810 and
// errors.Is(err, ErrIllegalUser) true for code 811.
func (e *LoginError) Is(target error) bool { return codeIs(e.Code, target) }

func codeIs(c wire.Code, target error) bool {
	switch target {
	case ErrWrongPassword:
		return c == wire.CodeWrongPassword
	case ErrIllegalUser:
		return c == wire.CodeIllegalUser
	}
	return false
}
