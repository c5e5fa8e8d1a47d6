//go:build linux

package netpoll

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// eventData points at the 8 bytes of epoll_data in ev (x/sys/unix splits
// them into Fd and Pad on most architectures).
func eventData(ev *unix.EpollEvent) unsafe.Pointer {
	return unsafe.Pointer(&ev.Fd)
}
