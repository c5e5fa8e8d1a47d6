package wire

import (
	"errors"
	"io"
	"testing"
)

// Release drops the buffers only at a block boundary with nothing read
// ahead; reading goes on after it. Wait looks at the next block without
// consuming it, and its error leaves the Reader usable.
func TestReleaseAndWait(t *testing.T) {
	ping := "PING\r\n12\r\nID: 1004\r\n\r\n"
	errLater := errors.New("not yet") // a read deadline, say
	src := &scripted{steps: []step{{data: ping + ping}, {err: errLater}, {data: ping}}}
	r := NewReader(src, Limits{})
	var b Block
	if err := r.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := r.ReadBlock(&b); err != nil {
		t.Fatalf("ReadBlock: %v", err)
	}
	if r.Release() {
		t.Fatal("Release with a block read ahead")
	}
	if err := r.ReadBlock(&b); err != nil {
		t.Fatalf("second ReadBlock: %v", err)
	}
	if !r.Release() || r.Buffered() != 0 {
		t.Fatal("Release at an empty boundary refused")
	}
	if err := r.Wait(); !errors.Is(err, errLater) {
		t.Fatalf("Wait = %v, want the source's error", err)
	}
	if err := r.ReadBlock(&b); err != nil || b.Type != "PING" {
		t.Fatalf("ReadBlock after a failed Wait: %v %+v", err, b)
	}
	if err := r.ReadBlock(&b); err != io.EOF {
		t.Fatalf("ReadBlock at the end = %v, want io.EOF", err)
	}
}

type step struct {
	data string
	err  error
}

// scripted returns one step per Read.
type scripted struct{ steps []step }

func (s *scripted) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	if st.err != nil {
		return 0, st.err
	}
	n := copy(p, st.data)
	if n < len(st.data) {
		s.steps = append([]step{{data: st.data[n:]}}, s.steps...)
	}
	return n, nil
}
