package wire

import (
	"io"
	"strconv"
	"strings"
)

// Writer writes blocks to a byte stream, each block in one Write call.
//
// The limit fields mirror the peer's Reader Limits: a block that the peer
// would refuse (and then close the connection for) is refused here instead,
// before anything is written. Zero means the default.
type Writer struct {
	w io.Writer
	// MaxSize is the largest SIZE the Writer sends (default 64 KiB).
	MaxSize int
	// MaxLine is the longest type line the Writer sends, without CRLF
	// (default 256).
	MaxLine int
	// MaxHeaders is the most header lines the Writer sends in one block
	// (default 64).
	MaxHeaders int
	buf        []byte
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteBlock checks b and writes it. A block that fails Check or the
// Writer's limits is not written at all, and the error is an *Error.
func (w *Writer) WriteBlock(b *Block) error {
	if err := Check(b); err != nil {
		return err
	}
	lim := Limits{MaxLine: w.MaxLine, MaxSize: w.MaxSize, MaxHeaders: w.MaxHeaders}.withDefaults()
	if n := typeLineLen(b); n > lim.MaxLine {
		return protoErr(ErrLineTooLong, "type line of "+strconv.Itoa(n)+" bytes > "+strconv.Itoa(lim.MaxLine))
	}
	if len(b.Headers) > lim.MaxHeaders {
		return protoErr(ErrTooManyHeaders, strconv.Itoa(len(b.Headers))+" > "+strconv.Itoa(lim.MaxHeaders))
	}
	size := ContentSize(b)
	if size > lim.MaxSize {
		return protoErr(ErrSizeTooLarge, strconv.Itoa(size)+" > "+strconv.Itoa(lim.MaxSize))
	}
	buf := appendBlock(w.buf[:0], b, size)
	_, err := w.w.Write(buf)
	if cap(buf) > keepScratch {
		buf = nil // grown for a big block: do not keep it while idle
	}
	w.buf = buf
	return err
}

// ContentSize returns the SIZE that b is written with.
func ContentSize(b *Block) int {
	n := 0
	for _, h := range b.Headers {
		n += len(h.Name) + 2 + len(h.Value) + 2
	}
	if !b.NoEmptyLine || len(b.Body) > 0 {
		n += 2 + len(b.Body)
	}
	return n
}

func typeLineLen(b *Block) int {
	if b.Arg == "" {
		return len(b.Type)
	}
	return len(b.Type) + 1 + len(b.Arg)
}

// Check reports whether b can be written so that a Reader reads it back
// unchanged:
//   - ErrBadTypeLine: empty Type, a space in Type, or a control character
//     other than CR and LF in Type or Arg;
//   - ErrNewline: CR or LF in Type, Arg, a header name or a header value;
//   - ErrBadHeader: an empty header name, or one holding ':'.
//
// Check does not apply size limits; Writer.WriteBlock does.
func Check(b *Block) error {
	if b.Type == "" {
		return protoErr(ErrBadTypeLine, "empty block type")
	}
	switch classify(b.Type, true) {
	case textNewline:
		return protoErr(ErrNewline, "block type "+strconv.Quote(clip(b.Type)))
	case textControl:
		return protoErr(ErrBadTypeLine, "space or control character in block type "+strconv.Quote(clip(b.Type)))
	}
	switch classify(b.Arg, false) {
	case textNewline:
		return protoErr(ErrNewline, "type line argument")
	case textControl:
		return protoErr(ErrBadTypeLine, "control character in type line argument")
	}
	for i := range b.Headers {
		h := &b.Headers[i]
		if hasNewline(h.Name) {
			return protoErr(ErrNewline, "header name "+strconv.Quote(clip(h.Name)))
		}
		if h.Name == "" || strings.IndexByte(h.Name, ':') >= 0 {
			return protoErr(ErrBadHeader, "header name "+strconv.Quote(clip(h.Name)))
		}
		if hasNewline(h.Value) {
			return protoErr(ErrNewline, "value of header "+strconv.Quote(clip(h.Name)))
		}
	}
	return nil
}

// AppendBlock appends the wire form of b to dst. On error (see Check) dst is
// returned unchanged. It applies no size limits.
func AppendBlock(dst []byte, b *Block) ([]byte, error) {
	if err := Check(b); err != nil {
		return dst, err
	}
	return appendBlock(dst, b, ContentSize(b)), nil
}

func appendBlock(dst []byte, b *Block, size int) []byte {
	dst = append(dst, b.Type...)
	if b.Arg != "" {
		dst = append(dst, ' ')
		dst = append(dst, b.Arg...)
	}
	dst = append(dst, '\r', '\n')
	dst = strconv.AppendInt(dst, int64(size), 10)
	dst = append(dst, '\r', '\n')
	for i := range b.Headers {
		h := &b.Headers[i]
		dst = append(dst, h.Name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, h.Value...)
		dst = append(dst, '\r', '\n')
	}
	if !b.NoEmptyLine || len(b.Body) > 0 {
		dst = append(dst, '\r', '\n')
		dst = append(dst, b.Body...)
	}
	return dst
}

const (
	textOK = iota
	textNewline
	textControl
)

// classify reports whether s holds CR or LF (textNewline), else whether it
// holds another control character, or a space when noSpace is set
// (textControl). It matches what Reader refuses in a type line.
func classify(s string, noSpace bool) int {
	res := textOK
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c != 0x7f {
			continue
		}
		switch {
		case c == '\r' || c == '\n':
			return textNewline
		case c == ' ' && !noSpace:
		default:
			res = textControl
		}
	}
	return res
}

func hasNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= '\r' && (c == '\r' || c == '\n') {
			return true
		}
	}
	return false
}
