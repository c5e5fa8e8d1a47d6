package xmppside

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sync"
)

// tracer writes the traffic copy of Config.Trace, with XEP-0077 passwords
// redacted.
type tracer struct {
	mu   sync.Mutex
	w    io.Writer
	dirs map[string]*traceDir // by direction label
}

const redacted = "[redacted]"

var (
	// passwordRe matches a (possibly prefixed) <password>...</password>
	// element; a self-closing <password/> does not open one.
	passwordRe = regexp.MustCompile(`(?s)(<(?:[\w.-]+:)?password(?:\s(?:[^>]*[^/>])?)?>)(?:[^<]|<!\[CDATA\[.*?\]\]>)*(</(?:[\w.-]+:)?password\s*>)`)
	// passwordFieldRe matches a data form <field var="password">...</field>.
	passwordFieldRe = regexp.MustCompile(`(?s)<(?:[\w.-]+:)?field\s(?:[^>]*\s)?var\s*=\s*(?:"password"|'password')(?:[^>]*[^/>])?>.*?</(?:[\w.-]+:)?field\s*>`)
	// valueRe matches a <value>...</value> element.
	valueRe = regexp.MustCompile(`(?s)(<(?:[\w.-]+:)?value(?:\s(?:[^>]*[^/>])?)?>)(?:[^<]|<!\[CDATA\[.*?\]\]>)*(</(?:[\w.-]+:)?value\s*>)`)
)

// redact returns p with password values replaced by [redacted].
func redact(p []byte) []byte {
	p = passwordRe.ReplaceAll(p, []byte("${1}"+redacted+"${2}"))
	return passwordFieldRe.ReplaceAllFunc(p, func(f []byte) []byte {
		return valueRe.ReplaceAll(f, []byte("${1}"+redacted+"${2}"))
	})
}

// maxTraceHold bounds what the tracer holds back while a stanza is not
// complete; a longer one is not shown (only its size), so that no password
// in it can leak half redacted.
const maxTraceHold = 1 << 20

// traceDir is one direction of the stream, cut into complete stanzas.
type traceDir struct {
	buf   []byte
	scan  int  // bytes of buf already scanned
	depth int  // element depth at buf[scan]
	state byte // scanner state at buf[scan]
	quote byte // the quote of the attribute value being scanned
	close bool // the tag being scanned is an end tag
	slash bool // the last byte of the tag so far was '/'
	skip  bool // the unit being scanned was too large: its end is not shown either
}

// Scanner states.
const (
	stText    byte = iota
	stLT           // just after '<'
	stTag          // in a start or end tag
	stQuote        // in an attribute value
	stSpecial      // in a comment, CDATA section, PI or declaration: until '>' ending it
)

// trace writes p, the bytes of one write or read in direction dir, to the
// trace: held back until they complete a stanza (or the stream's opening
// or closing tag), then redacted as a whole, so that a password split
// across reads or writes never shows.
func (t *tracer) trace(dir string, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dirs == nil {
		t.dirs = make(map[string]*traceDir, 2)
	}
	d := t.dirs[dir]
	if d == nil {
		d = &traceDir{}
		t.dirs[dir] = d
	}
	d.buf = append(d.buf, p...)
	for {
		end := d.next()
		if end < 0 {
			break
		}
		if d.skip {
			d.skip = false
		} else {
			t.emit(dir, redact(d.buf[:end]))
		}
		d.buf = d.buf[end:]
		d.scan = 0
	}
	if len(d.buf) > maxTraceHold {
		_, _ = fmt.Fprintf(t.w, "%s[%d bytes of a stanza not shown: too large to trace]\n", dir, len(d.buf))
		d.buf, d.scan = d.buf[:0], 0
		d.skip = true // the rest of it will not show either
	}
	if cap(d.buf) > 64<<10 && len(d.buf) < 1024 {
		d.buf = append([]byte(nil), d.buf...)
	}
}

func (t *tracer) emit(dir string, p []byte) {
	p = bytes.TrimSpace(p) // whitespace between stanzas (keep-alives)
	if len(p) == 0 {
		return
	}
	_, _ = io.WriteString(t.w, dir)
	_, _ = t.w.Write(p)
	_, _ = io.WriteString(t.w, "\n")
}

// next scans on and returns the end of the first complete unit in buf:
// a top-level element (depth 1 -> 1), or the stream's own start or end
// tag; -1 when buf holds none yet.
func (d *traceDir) next() int {
	for ; d.scan < len(d.buf); d.scan++ {
		c := d.buf[d.scan]
		switch d.state {
		case stText:
			if c == '<' {
				d.state = stLT
			}
		case stLT:
			switch c {
			case '!', '?':
				d.state = stSpecial
			case '/':
				d.state, d.close, d.slash = stTag, true, false
			default:
				d.state, d.close, d.slash = stTag, false, false
			}
		case stSpecial:
			if c == '>' && d.specialEnds() {
				d.state = stText
				if d.depth <= 1 {
					d.scan++
					return d.scan
				}
			}
		case stQuote:
			if c == d.quote {
				d.state = stTag
			}
		case stTag:
			switch c {
			case '"', '\'':
				d.state, d.quote = stQuote, c
			case '/':
				d.slash = true
				continue
			case '>':
				d.state = stText
				switch {
				case d.close:
					d.depth--
				case !d.slash:
					d.depth++
				}
				// A unit ends when a top-level element closes (or was
				// empty), or at the stream's own tags.
				if d.depth <= 1 {
					d.scan++
					return d.scan
				}
			}
			d.slash = false
		}
	}
	return -1
}

// specialEnds reports whether the '>' at d.scan ends the comment, CDATA
// section or processing instruction that buf holds from its last '<'.
func (d *traceDir) specialEnds() bool {
	head := d.buf[:d.scan+1]
	start := bytes.LastIndex(head, []byte("<!--"))
	cdata := bytes.LastIndex(head, []byte("<![CDATA["))
	switch {
	case cdata >= 0 && cdata >= start && !bytes.Contains(head[cdata:], []byte("]]>")):
		return false
	case cdata >= 0 && cdata >= start:
		return bytes.HasSuffix(head, []byte("]]>"))
	case start >= 0 && !bytes.Contains(head[start+4:], []byte("-->")):
		return false
	case start >= 0:
		return bytes.HasSuffix(head, []byte("-->"))
	}
	return true // a PI or declaration ends at its first '>'
}
