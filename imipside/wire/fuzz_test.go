package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// fuzzLimits are small so that the fuzzer reaches every limit quickly.
var fuzzLimits = Limits{MaxLine: 64, MaxSize: 4096, MaxHeaders: 16}

func FuzzReadWrite(f *testing.F) {
	for _, g := range goldens {
		f.Add([]byte(g.wire))
	}
	var stream []byte
	for _, name := range serverStreamNames {
		stream = append(stream, goldenByName(f, name).wire...)
	}
	f.Add(stream)
	for _, s := range []string{
		"STAT AWAY\n19\nID: 7\nFrom: 42\n\nbrb",
		"X\r\n0\r\n",
		"X\r\n2\r\n\r\n",
		"X\r\n5\r\na:b\r\n",
		"X\r\n6\r\na:  b\n",
		"HELO\r\n65537\r\n",
		"HELO\r\n12a\r\n",
		"HELO\r\n9\r\nID 1001\r\n",
		"HELO\r\n8\r\nID: 1\r1\n",
		"HE\x01LO\r\n0\r\n",
		block("HELO", manyHeaders(17)),
		strings.Repeat("A", 100) + "\r\n0\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), fuzzLimits)
		var b Block
		for range len(data) + 1 {
			err := r.ReadBlock(&b)
			if cap(r.scratch) > r.lim.MaxLine+r.lim.MaxSize {
				t.Fatalf("scratch grew to %d > MaxLine+MaxSize", cap(r.scratch))
			}
			if err != nil {
				var pe *Error
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &pe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			checkRoundTrip(t, &b)
		}
		t.Fatalf("more blocks than bytes")
	})
}

// checkRoundTrip writes b, reads it back and compares, then writes the
// result again and compares the bytes.
func checkRoundTrip(t *testing.T, b *Block) {
	t.Helper()
	// Rewriting may grow the content (LF becomes CRLF, "a:b" becomes
	// "a: b"), at most to 5/3 of it plus the empty line.
	big := Limits{MaxLine: fuzzLimits.MaxLine, MaxSize: 2*fuzzLimits.MaxSize + 2, MaxHeaders: fuzzLimits.MaxHeaders}
	var out bytes.Buffer
	w := &Writer{w: &out, MaxLine: big.MaxLine, MaxSize: big.MaxSize, MaxHeaders: big.MaxHeaders}
	if err := w.WriteBlock(b); err != nil {
		t.Fatalf("Reader accepted a block the Writer refuses: %v\nblock %+v", err, b)
	}
	first := bytes.Clone(out.Bytes())
	r := NewReader(&out, big)
	var again Block
	if err := r.ReadBlock(&again); err != nil {
		t.Fatalf("reading back %q: %v", first, err)
	}
	if d := sameBlock(&again, b); d != "" {
		t.Fatalf("round trip changed the block: %s\nwire %q", d, first)
	}
	var tail Block
	if err := r.ReadBlock(&tail); err != io.EOF {
		t.Fatalf("after the rewritten block: %v, want io.EOF", err)
	}
	second, err := AppendBlock(nil, &again)
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("second write differs: %q, %v\nfirst %q", second, err, first)
	}
}
