package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// block builds a block's wire form with a correct SIZE.
func block(typeLine, content string) string {
	return typeLine + "\r\n" + strconv.Itoa(len(content)) + "\r\n" + content
}

func manyHeaders(n int) string {
	var sb strings.Builder
	for i := range n {
		sb.WriteString("H" + strconv.Itoa(i) + ": v\r\n")
	}
	return sb.String()
}

func TestReadMalformed(t *testing.T) {
	long := strings.Repeat("A", 257)
	cases := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"type line 257 bytes", block(long, ""), Limits{}, ErrLineTooLong},
		{"type line beyond the buffer", block(strings.Repeat("A", 5000), ""), Limits{}, ErrLineTooLong},
		{"type line without end", strings.Repeat("A", 5000), Limits{}, ErrLineTooLong},
		{"type line over configured MaxLine", block("HELO 12345", ""), Limits{MaxLine: 9}, ErrLineTooLong},
		{"size line 257 bytes", "HELO\r\n" + strings.Repeat("0", 257) + "\r\n", Limits{}, ErrLineTooLong},
		{"size 12a", "HELO\r\n12a\r\n", Limits{}, ErrBadSize},
		{"size -1", "HELO\r\n-1\r\n", Limits{}, ErrBadSize},
		{"size with leading space", "HELO\r\n 12\r\n", Limits{}, ErrBadSize},
		{"size with trailing space", "HELO\r\n12 \r\n", Limits{}, ErrBadSize},
		{"empty size", "HELO\r\n\r\n", Limits{}, ErrBadSize},
		{"size +5", "HELO\r\n+5\r\n", Limits{}, ErrBadSize},
		{"size 11 digits", "HELO\r\n12345678901\r\n", Limits{}, ErrBadSize},
		{"size 11 zeros", "HELO\r\n00000000000\r\n", Limits{}, ErrBadSize},
		{"size hex", "HELO\r\n0x10\r\n", Limits{}, ErrBadSize},
		{"size with inner space", "HELO\r\n1 2\r\n", Limits{}, ErrBadSize},
		{"size in Unicode digits", "HELO\r\n١٢\r\n", Limits{}, ErrBadSize},
		{"size default max + 1", "HELO\r\n65537\r\n", Limits{}, ErrSizeTooLarge},
		{"size 10 digits", "HELO\r\n9999999999\r\n", Limits{}, ErrSizeTooLarge},
		{"size above configured max", "HELO\r\n101\r\n", Limits{MaxSize: 100}, ErrSizeTooLarge},
		{"header without colon", block("HELO", "ID 1001\r\n\r\n"), Limits{}, ErrBadHeader},
		{"empty header name", block("HELO", ": 1001\r\n\r\n"), Limits{}, ErrBadHeader},
		{"header line of spaces", block("HELO", "   \r\n\r\n"), Limits{}, ErrBadHeader},
		{"lone CR in a header", block("HELO", "ID: 10\r01\r\n\r\n"), Limits{}, ErrBadHeader},
		{"CR CR LF ending a header", block("HELO", "ID: 1001\r\r\n\r\n"), Limits{}, ErrBadHeader},
		{"lone CR as the last content", block("HELO", "ID: 1\r\n\r"), Limits{}, ErrBadHeader},
		{"65 headers", block("HELO", manyHeaders(65)+"\r\n"), Limits{}, ErrTooManyHeaders},
		{"65 headers, no empty line", block("HELO", manyHeaders(65)), Limits{}, ErrTooManyHeaders},
		{"3 headers over MaxHeaders 2", block("HELO", manyHeaders(3)), Limits{MaxHeaders: 2}, ErrTooManyHeaders},
		{"empty type line", block("", "\r\n"), Limits{}, ErrBadTypeLine},
		{"type line starting with a space", block(" HELO", "\r\n"), Limits{}, ErrBadTypeLine},
		{"control char in type", block("HE\x01LO", "\r\n"), Limits{}, ErrBadTypeLine},
		{"tab in type line", block("STAT\tONLINE", "\r\n"), Limits{}, ErrBadTypeLine},
		{"DEL in argument", block("STAT ONLINE\x7f", "\r\n"), Limits{}, ErrBadTypeLine},
		{"CR inside the type line", block("STAT\rONLINE", "\r\n"), Limits{}, ErrBadTypeLine},
		{"NUL in argument", block("LIST ADD 1\x00", "\r\n"), Limits{}, ErrBadTypeLine},
	}
	for i, c := range cases {
		for _, oneByte := range []bool{false, true} {
			var src io.Reader = strings.NewReader(c.in)
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			var b Block
			err := NewReader(src, c.lim).ReadBlock(&b)
			if !errors.Is(err, c.want) {
				t.Errorf("%d %s (oneByte %v): %v, want %v", i, c.name, oneByte, err, c.want)
				continue
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Err != c.want {
				t.Errorf("%d %s: %T %v is not an *Error wrapping %v", i, c.name, err, err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "imip: ") {
				t.Errorf("%d %s: message %q lacks the package prefix", i, c.name, err)
			}
		}
	}
}

// Values right at the limits are accepted.
func TestReadAtLimits(t *testing.T) {
	body := strings.Repeat("x", 100-len(manyHeaders(2))-2)
	cases := []struct {
		name string
		in   string
		lim  Limits
	}{
		{"type line 256 bytes", block(strings.Repeat("A", 256), ""), Limits{}},
		{"size line with leading zeros", "HELO\r\n0000000002\r\n\r\n", Limits{}},
		{"SIZE 0", "PING\r\n0\r\n", Limits{}},
		{"64 headers", block("HELO", manyHeaders(64)+"\r\n"), Limits{}},
		{"SIZE = MaxSize", block("MESG", manyHeaders(2)+"\r\n"+body), Limits{MaxSize: 100}},
		{"SIZE = default MaxSize", block("MESG", "\r\n"+strings.Repeat("y", DefaultMaxSize-2)), Limits{}},
		{"MaxLine 1000", block(strings.Repeat("B", 1000), ""), Limits{MaxLine: 1000}},
		{"8-bit bytes in the type line", block("MESG ünïcödé", ""), Limits{}},
		{"control bytes in a header value", block("MESG", "X: a\x00\tb\r\n"), Limits{}},
	}
	for i, c := range cases {
		var b Block
		if err := NewReader(strings.NewReader(c.in), c.lim).ReadBlock(&b); err != nil {
			t.Errorf("%d %s: %v", i, c.name, err)
		}
	}
}

// A SIZE above the limit is refused as soon as the size line is read:
// nothing more is read from the connection, nothing is allocated for it.
func TestSizeLimitReadsNoFurther(t *testing.T) {
	for i, c := range []struct {
		size string
		lim  Limits
	}{
		{"65537", Limits{}},
		{"9999999999", Limits{}},
		{"1001", Limits{MaxSize: 1000}},
		{"2147483648", Limits{MaxSize: 1 << 40}}, // MaxSize is capped at 1 GiB
	} {
		for _, chunk := range []int{0, 1} {
			src := &stopReader{data: []byte("MESG\r\n" + c.size + "\r\n"), chunk: chunk}
			var b Block
			err := NewReader(src, c.lim).ReadBlock(&b)
			if !errors.Is(err, ErrSizeTooLarge) {
				t.Errorf("%d SIZE %s chunk %d: %v, want ErrSizeTooLarge", i, c.size, chunk, err)
			}
			if src.past != 0 {
				t.Errorf("%d SIZE %s chunk %d: the Reader read past the size line", i, c.size, chunk)
			}
		}
	}
}

// Heap bytes allocated by f, averaged over runs.
func allocBytes(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func TestHugeSizeAllocatesNothingBig(t *testing.T) {
	in := []byte("MESG\r\n9999999999\r\nID: 1\r\n\r\nhello")
	src := bytes.NewReader(in)
	r := NewReader(src, Limits{})
	var b Block
	f := func() {
		src.Reset(in)
		r.br.Reset(src)
		if err := r.ReadBlock(&b); !errors.Is(err, ErrSizeTooLarge) {
			t.Fatalf("ReadBlock: %v", err)
		}
	}
	if n := allocBytes(100, f); n > 512 {
		t.Fatalf("a refused SIZE cost %d heap bytes per block, want <= 512", n)
	}
	if cap(r.scratch) > DefaultMaxLine {
		t.Fatalf("scratch grew to %d for a refused block", cap(r.scratch))
	}
}

// The scratch buffer never exceeds MaxLine+MaxSize, and after a big block it
// is dropped so that an idle Reader stays small.
func TestScratchBounded(t *testing.T) {
	lim := Limits{MaxSize: 10000}
	in := block("MESG", "\r\n"+strings.Repeat("z", 9998)) + block("PING", "ID: 1\r\n\r\n")
	r := NewReader(strings.NewReader(in), lim)
	var b Block
	var peak int
	for range 2 {
		if err := r.ReadBlock(&b); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, cap(r.scratch))
		if cap(r.scratch) > keepScratch {
			t.Fatalf("scratch of %d bytes kept after a block", cap(r.scratch))
		}
	}
	if peak > r.lim.MaxLine+r.lim.MaxSize {
		t.Fatalf("scratch peaked at %d > MaxLine+MaxSize", peak)
	}
	if len(b.Body) != 0 || b.Type != "PING" {
		t.Fatalf("second block = %+v", b)
	}
}

// recorder is an io.Writer that counts its calls.
type recorder struct {
	bytes.Buffer
	calls int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.calls++
	return r.Buffer.Write(p)
}

func TestWriteRefused(t *testing.T) {
	ok := func() Block {
		return Block{Type: "MESG", Arg: "x", Headers: hd("ID", "1001", "To", "42"), Body: []byte("hi")}
	}
	cases := []struct {
		name   string
		mutate func(*Block)
		w      Writer
		want   error
	}{
		{"LF in Arg", func(b *Block) { b.Arg = "ADD 1\n" }, Writer{}, ErrNewline},
		{"CR in Arg", func(b *Block) { b.Arg = "ADD\r1" }, Writer{}, ErrNewline},
		{"CRLF in Type", func(b *Block) { b.Type = "MESG\r\n" }, Writer{}, ErrNewline},
		{"CR in header name", func(b *Block) { b.Headers[1].Name = "T\ro" }, Writer{}, ErrNewline},
		{"LF in header name", func(b *Block) { b.Headers[1].Name = "To\n" }, Writer{}, ErrNewline},
		{"CR in header value", func(b *Block) { b.Headers[0].Value = "1001\r" }, Writer{}, ErrNewline},
		{"LF in header value", func(b *Block) { b.Headers[1].Value = "42\nID: 666" }, Writer{}, ErrNewline},
		{"empty Type", func(b *Block) { b.Type = "" }, Writer{}, ErrBadTypeLine},
		{"Type with a space", func(b *Block) { b.Type = "LIST ADD" }, Writer{}, ErrBadTypeLine},
		{"control char in Type", func(b *Block) { b.Type = "ME\x00SG" }, Writer{}, ErrBadTypeLine},
		{"tab in Arg", func(b *Block) { b.Arg = "ADD\t1" }, Writer{}, ErrBadTypeLine},
		{"empty header name", func(b *Block) { b.Headers[0].Name = "" }, Writer{}, ErrBadHeader},
		{"colon in header name", func(b *Block) { b.Headers[0].Name = "I:D" }, Writer{}, ErrBadHeader},
		{"over default MaxSize", func(b *Block) { b.Body = make([]byte, DefaultMaxSize) }, Writer{}, ErrSizeTooLarge},
		{"over Writer.MaxSize", func(b *Block) { b.Body = make([]byte, 100) }, Writer{MaxSize: 100}, ErrSizeTooLarge},
		{"type line over 256", func(b *Block) { b.Arg = strings.Repeat("a", 256-len("MESG")) }, Writer{}, ErrLineTooLong},
		{"type line over Writer.MaxLine", func(b *Block) { b.Arg = "123456" }, Writer{MaxLine: 10}, ErrLineTooLong},
		{"65 headers", func(b *Block) { b.Headers = make([]Header, 65); fill(b.Headers) }, Writer{}, ErrTooManyHeaders},
		{"over Writer.MaxHeaders", func(b *Block) {}, Writer{MaxHeaders: 1}, ErrTooManyHeaders},
	}
	for i, c := range cases {
		b := ok()
		c.mutate(&b)
		var rec recorder
		w := c.w
		w.w = &rec
		err := w.WriteBlock(&b)
		if !errors.Is(err, c.want) {
			t.Errorf("%d %s: %v, want %v", i, c.name, err, c.want)
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%d %s: %T is not an *Error", i, c.name, err)
		}
		if rec.calls != 0 || rec.Len() != 0 {
			t.Errorf("%d %s: %d bytes written in %d calls, want none", i, c.name, rec.Len(), rec.calls)
		}
		// AppendBlock applies Check but no limits.
		dst, aerr := AppendBlock([]byte("keep"), &b)
		if (Check(&b) != nil) != (aerr != nil) || (aerr != nil && string(dst) != "keep") {
			t.Errorf("%d %s: AppendBlock = %q, %v; Check = %v", i, c.name, dst, aerr, Check(&b))
		}
	}
}

func fill(h []Header) {
	for i := range h {
		h[i] = Header{Name: "H" + strconv.Itoa(i), Value: "v"}
	}
}

// Right at the Writer's limits a block is written, and a Reader with the
// same limits reads it back.
func TestWriteAtLimits(t *testing.T) {
	cases := []struct {
		name string
		b    Block
		w    Writer
	}{
		{"type line 256", Block{Type: "MESG", Arg: strings.Repeat("a", 256-len("MESG "))}, Writer{}},
		{"64 headers", Block{Type: "MESG", Headers: func() []Header { h := make([]Header, 64); fill(h); return h }()}, Writer{}},
		{"SIZE = MaxSize", Block{Type: "MESG", Body: make([]byte, 98)}, Writer{MaxSize: 100}},
	}
	for i, c := range cases {
		var rec recorder
		w := c.w
		w.w = &rec
		if err := w.WriteBlock(&c.b); err != nil {
			t.Errorf("%d %s: %v", i, c.name, err)
			continue
		}
		if rec.calls != 1 {
			t.Errorf("%d %s: %d Write calls, want 1", i, c.name, rec.calls)
		}
		var got Block
		lim := Limits{MaxLine: w.MaxLine, MaxSize: w.MaxSize, MaxHeaders: w.MaxHeaders}
		if err := NewReader(&rec, lim).ReadBlock(&got); err != nil {
			t.Errorf("%d %s: read back: %v", i, c.name, err)
		} else if d := sameBlock(&got, &c.b); d != "" {
			t.Errorf("%d %s: read back: %s", i, c.name, d)
		}
	}
}

// A failing underlying writer's error comes back from WriteBlock.
func TestWriteError(t *testing.T) {
	boom := errors.New("boom")
	w := NewWriter(errWriter{boom})
	if err := w.WriteBlock(&Block{Type: "PING"}); !errors.Is(err, boom) {
		t.Fatalf("WriteBlock = %v, want boom", err)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }
