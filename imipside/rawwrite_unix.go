//go:build unix

package imipside

import "golang.org/x/sys/unix"

// rawWrite is one write(2) on a non-blocking descriptor.
func rawWrite(fd uintptr, p []byte) (int, error) { return unix.Write(int(fd), p) }
