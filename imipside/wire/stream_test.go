package wire

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// serverStream is what a server sends in one session, blocks back to back in
// mixed styles: with a body, Odigo style without the empty line, and Yahoo
// style with an empty line and no body.
var serverStreamNames = []string{
	"S HELO", "S LOGN Buddy", "S STAT", "S MESG", "S LIST ADD", "S ACK", "C DISC", "S ACK 810", "S LOGN",
}

func serverStream(t *testing.T) (stream []byte, blocks []*Block, ends []int) {
	t.Helper()
	for _, name := range serverStreamNames {
		g := goldenByName(t, name)
		stream = append(stream, g.wire...)
		blocks = append(blocks, &g.block)
		ends = append(ends, len(stream))
	}
	return stream, blocks, ends
}

// readAll reads blocks until an error and returns copies of them and the
// error.
func readAll(r *Reader) ([]Block, error) {
	var out []Block
	var b Block
	for range 1000 {
		if err := r.ReadBlock(&b); err != nil {
			return out, err
		}
		c := b
		c.Headers = append([]Header(nil), b.Headers...)
		c.Body = append([]byte(nil), b.Body...)
		out = append(out, c)
	}
	panic("readAll: more than 1000 blocks")
}

func TestStreamDelivery(t *testing.T) {
	stream, want, _ := serverStream(t)
	deliveries := []struct {
		name string
		r    func() io.Reader
	}{
		{"one read", func() io.Reader { return &stopReader{data: stream} }},
		{"one byte per read", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"EOF with the last data", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
		{"13 bytes per read", func() io.Reader { return &stopReader{data: stream, chunk: 13} }},
	}
	for i, d := range deliveries {
		got, err := readAll(NewReader(d.r(), Limits{}))
		if len(got) != len(want) {
			t.Errorf("%d %s: read %d blocks, want %d (err %v)", i, d.name, len(got), len(want), err)
			continue
		}
		for j := range want {
			if diff := sameBlock(&got[j], want[j]); diff != "" {
				t.Errorf("%d %s: block %d: %s", i, d.name, j, diff)
			}
		}
		if err != io.EOF && !errors.Is(err, errPastEnd) {
			t.Errorf("%d %s: after the last block: %v, want io.EOF", i, d.name, err)
		}
	}
}

// TestStreamTruncation cuts the stream at every byte offset: the blocks
// before the cut are read, then io.EOF when the cut is at a block boundary,
// io.ErrUnexpectedEOF when it is inside a block.
func TestStreamTruncation(t *testing.T) {
	stream, want, ends := serverStream(t)
	for cut := 0; cut <= len(stream); cut++ {
		complete, atBoundary := 0, cut == 0
		for _, e := range ends {
			if e <= cut {
				complete++
			}
			if e == cut {
				atBoundary = true
			}
		}
		wantErr := io.ErrUnexpectedEOF
		if atBoundary {
			wantErr = io.EOF
		}
		for _, oneByte := range []bool{false, true} {
			var src io.Reader = bytes.NewReader(stream[:cut])
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			got, err := readAll(NewReader(src, Limits{}))
			if err != wantErr {
				t.Fatalf("cut at %d (oneByte %v): error %v, want %v", cut, oneByte, err, wantErr)
			}
			if len(got) != complete {
				t.Fatalf("cut at %d (oneByte %v): %d blocks, want %d", cut, oneByte, len(got), complete)
			}
			for j := range got {
				if d := sameBlock(&got[j], want[j]); d != "" {
					t.Fatalf("cut at %d: block %d: %s", cut, j, d)
				}
			}
		}
	}
}

// An error of the underlying reader is returned as is, not as EOF.
func TestStreamReadError(t *testing.T) {
	boom := errors.New("boom")
	for i, prefix := range []string{"", "HEL", "HELO\r\n3", "HELO\r\n32\r\nID: 1"} {
		r := NewReader(io.MultiReader(strings.NewReader(prefix), iotest.ErrReader(boom)), Limits{})
		var b Block
		if err := r.ReadBlock(&b); !errors.Is(err, boom) {
			t.Errorf("%d %q: %v, want boom", i, prefix, err)
		}
	}
}

// Bare LF line ends are accepted on input; the Writer sends CRLF.
func TestBareLF(t *testing.T) {
	in := "STAT AWAY\n19\nID: 7\nFrom: 42\n\nbrb" // 6+9+1+3
	var b Block
	if err := NewReader(strings.NewReader(in), Limits{}).ReadBlock(&b); err != nil {
		t.Fatal(err)
	}
	want := Block{Type: "STAT", Arg: "AWAY", Headers: hd("ID", "7", "From", "42"), Body: []byte("brb")}
	if d := sameBlock(&b, &want); d != "" {
		t.Fatal(d)
	}
}

// Header lines: split at the first ':', one space dropped, case kept, a
// last header line without CRLF still counts.
func TestHeaderSyntax(t *testing.T) {
	cases := []struct {
		content string
		want    []Header
		noEmpty bool
		body    string
	}{
		{"a:b\r\n", hd("a", "b"), true, ""},
		{"a: b\r\n", hd("a", "b"), true, ""},
		{"a:  b\r\n", hd("a", " b"), true, ""},
		{"a: b: c\r\n", hd("a", "b: c"), true, ""},
		{"a:\r\n", hd("a", ""), true, ""},
		{"a: \r\n", hd("a", ""), true, ""},
		{"iD: 5\r\nfrom: 7", hd("iD", "5", "from", "7"), true, ""},
		{"x: 1\r\n\r\n\r\nbody\r\n", hd("x", "1"), false, "\r\nbody\r\n"},
		{"\r\n", nil, false, ""},
		{"", nil, true, ""},
		{"\r\nID: 1\r\n", nil, false, "ID: 1\r\n"},
	}
	for i, c := range cases {
		in := "X\r\n" + itoa(len(c.content)) + "\r\n" + c.content
		var b Block
		if err := NewReader(strings.NewReader(in), Limits{}).ReadBlock(&b); err != nil {
			t.Errorf("%d %q: %v", i, c.content, err)
			continue
		}
		want := Block{Type: "X", Headers: c.want, NoEmptyLine: c.noEmpty, Body: []byte(c.body)}
		if d := sameBlock(&b, &want); d != "" {
			t.Errorf("%d %q: %s", i, c.content, d)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
