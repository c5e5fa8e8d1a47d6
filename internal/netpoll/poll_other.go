//go:build !linux

package netpoll

// Poller is unavailable here: Watch always returns ErrUnsupported.
type Poller struct{}

// Watch is a parked connection's registration (never made here).
type Watch struct{}

// Default returns a Poller whose Watch always fails with ErrUnsupported.
func Default() (*Poller, error) { return &Poller{}, nil }

// New returns a Poller whose Watch always fails with ErrUnsupported.
func New() (*Poller, error) { return &Poller{}, nil }

// Watch returns ErrUnsupported.
func (p *Poller) Watch(c any, wake func()) (*Watch, error) { return nil, ErrUnsupported }

// Watches reports 0.
func (p *Poller) Watches() int { return 0 }

// Arm returns ErrClosed.
func (w *Watch) Arm() error { return ErrClosed }

// Close does nothing.
func (w *Watch) Close() {}
