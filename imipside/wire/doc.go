// Package wire is the IMIP/1.0 language: blocks, their framing, and the value
// syntax both ends of a connection share.
//
// A block is a type line, a size line, header lines, an optional empty line
// and an optional body. SIZE counts every byte after the size line, and the
// body has no trailing CRLF, so the next block starts at the very next byte.
// Reader therefore reads exactly SIZE bytes and never waits for a line end
// inside a block.
//
// Reader and Writer do no I/O policy: no goroutines, no timeouts, no logging.
// Limits are checked before anything is allocated; each breach is an *Error
// that matches one of the sentinel errors with errors.Is.
// Neither Reader nor Writer is safe for concurrent use.
//
// The package uses the standard library only.
package wire
