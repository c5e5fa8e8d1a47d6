// Package netpoll lets a connection wait for its next byte without a
// goroutine. A goroutine blocked in Read costs its stack (2 KiB at least)
// and its read buffer for as long as the peer is silent; with thousands of
// idle IMIP sessions that is most of the memory a user costs. Instead, a
// reader that has consumed everything it read arms a Watch on its
// connection and returns; when the connection becomes readable (data, end
// of stream or an error), the Poller calls the Watch's wake function once,
// which starts a reader again.
//
// The Poller is one epoll instance (Linux) with EPOLLONESHOT interest: a
// Watch reports at most once per Arm, so at most one reader runs per
// connection, and arming a connection that is already readable reports it
// at once (epoll checks readiness when the interest is changed), so no
// wake-up is lost between a reader's last Read and its Arm. The poller's
// goroutine runs only while some Watch exists, and the connection's own
// reads still go through Go's runtime poller: this package only decides
// when a reader needs to exist.
//
// Where epoll is not available (other systems, or a connection without a
// file descriptor such as net.Pipe), Watch returns ErrUnsupported and the
// caller keeps a blocking reader goroutine.
package netpoll

import "errors"

// ErrUnsupported is returned by Watch when the connection cannot be parked
// here; the caller reads with a blocking goroutine instead.
var ErrUnsupported = errors.New("netpoll: not supported for this connection")

// ErrClosed is returned by Arm after Close.
var ErrClosed = errors.New("netpoll: watch closed")
