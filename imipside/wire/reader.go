package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Default limits, used where a Limits field is zero.
const (
	DefaultMaxLine    = 256
	DefaultMaxSize    = 64 << 10
	DefaultMaxHeaders = 64
	// DefaultReadBuffer is the size of the Reader's buffer. It is small on
	// purpose: a gateway holds one Reader per idle user.
	DefaultReadBuffer = 512
	// keepScratch is the largest scratch buffer kept between blocks; a larger
	// one, grown for a big block, is dropped so an idle reader stays small.
	keepScratch = 1 << 10
	// maxMaxSize caps MaxSize and MaxLine whatever the configuration, so
	// that offsets inside a block fit in an int32.
	maxMaxSize = 1 << 30
)

// Limits bounds what a Reader accepts. The zero value means the defaults.
type Limits struct {
	MaxLine    int // longest type line or size line, without CRLF (default 256)
	MaxSize    int // largest SIZE (default 64 KiB, at most 1 GiB)
	MaxHeaders int // most header lines in one block (default 64)
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = DefaultMaxLine
	}
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxSize > maxMaxSize {
		l.MaxSize = maxMaxSize
	}
	if l.MaxLine > maxMaxSize {
		l.MaxLine = maxMaxSize
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

// Reader reads blocks from a byte stream.
type Reader struct {
	br      *bufio.Reader // nil after Release, until the next read
	src     io.Reader
	size    int
	lim     Limits
	scratch []byte
}

// NewReader returns a Reader that reads from r with the given limits.
func NewReader(r io.Reader, lim Limits) *Reader {
	lim = lim.withDefaults()
	size := DefaultReadBuffer
	if lim.MaxLine+2 > size {
		size = lim.MaxLine + 2
	}
	return &Reader{br: bufio.NewReaderSize(r, size), src: r, size: size, lim: lim}
}

// Buffered reports how many bytes the Reader has read ahead of the last block.
func (r *Reader) Buffered() int {
	if r.br == nil {
		return 0
	}
	return r.br.Buffered()
}

// Wait waits for the first byte of the next block without consuming it
// (or returns at once when one is read ahead). A read error, a deadline
// of the underlying connection included, leaves the Reader as it was, so
// a caller may wait with a deadline and read the block afterwards.
func (r *Reader) Wait() error {
	if r.br == nil {
		r.br = bufio.NewReaderSize(r.src, r.size)
	}
	_, err := r.br.Peek(1)
	return err
}

// Release drops the Reader's buffers when nothing is read ahead (Buffered
// is 0), so a Reader waiting for its next block holds no buffer; the next
// read allocates a new one. It reports whether it released them.
func (r *Reader) Release() bool {
	if r.Buffered() != 0 {
		return false
	}
	r.br, r.scratch = nil, nil
	return true
}

// readLine returns the next line without its CRLF (or bare LF). The slice is
// valid until the next read.
func (r *Reader) readLine(first bool) ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, protoErr(ErrLineTooLong, "no line end within "+strconv.Itoa(len(line))+" bytes")
	case errors.Is(err, io.EOF):
		if first && len(line) == 0 {
			return nil, io.EOF
		}
		return nil, io.ErrUnexpectedEOF
	default:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > r.lim.MaxLine {
		return nil, protoErr(ErrLineTooLong, strconv.Itoa(len(line))+" bytes")
	}
	return line, nil
}

// ReadBlock reads the next block into b, reusing b's storage.
// It returns io.EOF only when the stream ends at a block boundary, and
// io.ErrUnexpectedEOF when it ends inside a block. A protocol violation is
// an *Error; after one the stream cannot be resynchronised and the
// connection should be closed. After an error b holds no meaningful block.
func (r *Reader) ReadBlock(b *Block) error {
	// Like b.Reset, but the old header slots are cleared only where the new
	// block does not overwrite them: half the pointer writes.
	oldHeaders := len(b.Headers)
	b.Type, b.Arg, b.NoEmptyLine = "", "", false
	b.Headers, b.Body = b.Headers[:0], b.Body[:0]
	if r.br == nil {
		r.br = bufio.NewReaderSize(r.src, r.size)
	}
	err := r.readBlock(b)
	if n := len(b.Headers); n < oldHeaders {
		clear(b.Headers[n:oldHeaders])
	}
	if cap(r.scratch) > keepScratch {
		// Grown for a big block: drop it so an idle Reader stays small.
		r.scratch = nil
	}
	return err
}

func (r *Reader) readBlock(b *Block) error {
	line, err := r.readLine(true)
	if err != nil {
		return err
	}
	if len(line) == 0 || line[0] == ' ' {
		return protoErr(ErrBadTypeLine, "empty block type")
	}
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return protoErr(ErrBadTypeLine, "control character")
		}
	}
	typeLen := len(line)
	r.scratch = append(r.scratch[:0], line...)

	sizeLine, err := r.readLine(false)
	if err != nil {
		return err
	}
	size, err := parseSize(sizeLine, r.lim.MaxSize)
	if err != nil {
		return err
	}
	// The size is checked: only now grow the scratch buffer.
	need := typeLen + size
	if cap(r.scratch) < need {
		grown := make([]byte, need)
		copy(grown, r.scratch[:typeLen])
		r.scratch = grown
	}
	r.scratch = r.scratch[:need]
	if _, err := io.ReadFull(r.br, r.scratch[typeLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return r.parse(b, typeLen)
}

// parseSize parses a SIZE line: plain ASCII decimal digits, at most 10, and
// no more than max.
func parseSize(line []byte, max int) (int, error) {
	if len(line) == 0 || len(line) > 10 {
		return 0, protoErr(ErrBadSize, strconv.Quote(clip(string(line))))
	}
	var n int64 // 10 digits fit, whatever the size of int
	for _, c := range line {
		if c < '0' || c > '9' {
			return 0, protoErr(ErrBadSize, strconv.Quote(string(line)))
		}
		n = n*10 + int64(c-'0')
	}
	if n > int64(max) {
		return 0, protoErr(ErrSizeTooLarge, string(line)+" > "+strconv.Itoa(max))
	}
	return int(n), nil
}

// hdrSpan locates one header line inside the content: name is
// content[start:colon], value is content[value:end].
type hdrSpan struct{ start, colon, value, end int32 }

// parse splits scratch (type line, then SIZE bytes) into b. The type line and
// all header names and values share one string allocation; the body is copied
// into b.Body.
func (r *Reader) parse(b *Block, typeLen int) error {
	content := r.scratch[typeLen:]
	// One pass over the header lines, up to the empty line or the end of the
	// content. Offsets fit in int32: SIZE has at most 10 digits and is bounded
	// by MaxSize, which NewReader keeps below 1<<31.
	var stack [16]hdrSpan
	spans := stack[:0]
	pos, bodyStart := 0, -1
	for pos < len(content) {
		if content[pos] == '\n' {
			bodyStart = pos + 1
			break
		}
		if content[pos] == '\r' && pos+1 < len(content) && content[pos+1] == '\n' {
			bodyStart = pos + 2
			break
		}
		end, next := len(content), len(content)
		if i := bytes.IndexByte(content[pos:], '\n'); i >= 0 {
			end, next = pos+i, pos+i+1
		}
		if end > pos && content[end-1] == '\r' {
			end--
		}
		line := content[pos:end]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.IndexByte(line, '\r') >= 0 {
			return protoErr(ErrBadHeader, strconv.Quote(clip(string(line))))
		}
		if len(spans) >= r.lim.MaxHeaders {
			return protoErr(ErrTooManyHeaders, "more than "+strconv.Itoa(r.lim.MaxHeaders))
		}
		value := colon + 1
		if value < len(line) && line[value] == ' ' {
			value++
		}
		spans = append(spans, hdrSpan{int32(pos), int32(pos + colon), int32(pos + value), int32(end)})
		pos = next
	}
	hdrEnd := pos
	b.NoEmptyLine = bodyStart < 0
	if bodyStart < 0 {
		bodyStart = len(content)
	}

	s := string(r.scratch[:typeLen+hdrEnd])
	typeLine, hdrs := s[:typeLen], s[typeLen:]
	if sp := strings.IndexByte(typeLine, ' '); sp >= 0 {
		b.Type, b.Arg = typeLine[:sp], typeLine[sp+1:]
	} else {
		b.Type = typeLine
	}
	if cap(b.Headers) < len(spans) {
		b.Headers = make([]Header, 0, len(spans))
	}
	for _, h := range spans {
		b.Headers = append(b.Headers, Header{Name: hdrs[h.start:h.colon], Value: hdrs[h.value:h.end]})
	}
	b.Body = append(b.Body[:0], content[bodyStart:]...)
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
