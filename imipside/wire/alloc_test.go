package wire

import (
	"io"
	"strings"
	"testing"
)

// TestBenchBlockIsValid guards the benchmark input: a wrong SIZE would still
// parse (the stream drifts) and make the numbers meaningless.
func TestBenchBlockIsValid(t *testing.T) {
	declared, counted := declaredSize(t, string(mesgBlock))
	if declared != counted {
		t.Fatalf("mesgBlock: SIZE %d, %d bytes follow", declared, counted)
	}
	w := mesgForWrite()
	var out strings.Builder
	if err := NewWriter(&out).WriteBlock(w); err != nil || out.String() != string(mesgBlock) {
		t.Fatalf("mesgForWrite writes %q, %v", out.String(), err)
	}
	r := NewReader(&loopReader{data: mesgBlock}, Limits{})
	var b Block
	for i := range 10 {
		if err := r.ReadBlock(&b); err != nil {
			t.Fatal(err)
		}
		if d := sameBlock(&b, w); d != "" {
			t.Fatalf("block %d: %s", i, d)
		}
	}
}

// Reading into a reused Block costs one allocation: the string that holds
// the type line and every header. Writing costs none.
func TestAllocsPerBlock(t *testing.T) {
	r := NewReader(&loopReader{data: mesgBlock}, Limits{})
	var b Block
	read := testing.AllocsPerRun(1000, func() {
		if err := r.ReadBlock(&b); err != nil {
			t.Fatal(err)
		}
	})
	if read > 1 {
		t.Errorf("ReadBlock: %.1f allocations per block, want <= 1", read)
	}
	w := NewWriter(io.Discard)
	blk := mesgForWrite()
	write := testing.AllocsPerRun(1000, func() {
		if err := w.WriteBlock(blk); err != nil {
			t.Fatal(err)
		}
	})
	if write > 0 {
		t.Errorf("WriteBlock: %.1f allocations per block, want 0", write)
	}
}

// A reused Block does not keep the strings of an earlier, longer block alive
// in its spare header slots, after a good block or after an error.
func TestReusedBlockReleasesOldHeaders(t *testing.T) {
	in := block("MESG", manyHeaders(8)+"\r\n") + block("PING", "ID: 1\r\n") +
		block("MESG", manyHeaders(8)+"\r\n") + "PING\r\nbad\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	var b Block
	for i, wantLen := range []int{8, 1, 8, -1} {
		err := r.ReadBlock(&b)
		if (err != nil) != (wantLen < 0) {
			t.Fatalf("block %d: %v", i, err)
		}
		if wantLen < 0 {
			wantLen = 0
		}
		if len(b.Headers) != wantLen {
			t.Fatalf("block %d: %d headers, want %d", i, len(b.Headers), wantLen)
		}
		for j, h := range b.Headers[len(b.Headers):cap(b.Headers)] {
			if h != (Header{}) {
				t.Fatalf("block %d: spare slot %d still holds %q", i, j, h)
			}
		}
	}
}
