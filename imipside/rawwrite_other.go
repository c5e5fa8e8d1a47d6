//go:build !unix

package imipside

import "errors"

// rawWrite is not available here: every block goes through the writer
// goroutine.
func rawWrite(uintptr, []byte) (int, error) {
	return 0, errors.New("imipside: no raw writes on this system")
}
