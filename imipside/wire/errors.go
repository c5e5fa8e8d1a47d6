package wire

import "errors"

// Sentinel errors. Every error that Reader and Writer return for bad input is
// an *Error wrapping one of these.
var (
	ErrLineTooLong    = errors.New("imip: line too long")
	ErrBadTypeLine    = errors.New("imip: malformed type line")
	ErrBadSize        = errors.New("imip: malformed size line")
	ErrSizeTooLarge   = errors.New("imip: block size above limit")
	ErrBadHeader      = errors.New("imip: malformed header line")
	ErrTooManyHeaders = errors.New("imip: too many headers")
	ErrNewline        = errors.New("imip: CR or LF in a type line argument, header name or value")
	ErrBadValue       = errors.New("imip: malformed value")
)

// Error describes one protocol violation.
// Err is one of the sentinel errors; Detail says where.
type Error struct {
	Err    error
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap returns the sentinel error.
func (e *Error) Unwrap() error { return e.Err }

func protoErr(sentinel error, detail string) error {
	return &Error{Err: sentinel, Detail: detail}
}
