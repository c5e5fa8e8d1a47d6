package xmppside

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"mellium.im/xmpp/component"
)

// Outbound stanza size.
//
// A server closes the component stream when one stanza exceeds its limit
// (Prosody 0.12: component_stanza_size_limit, 512 KiB), and every user of
// the gateway goes with it. So every stanza the component writes is first
// measured, as encoded, against Config.MaxStanzaSize. A cheap upper bound
// (escapeBound bytes per byte of text, plus a fixed overhead) settles the
// common case; only when that bound exceeds the limit is the stanza encoded
// into a counting writer, exactly as mellium will write it.

// escapeBound bounds the bytes Go's XML encoder writes for one byte of text
// or attribute value: at most 5 (a tab is &#x9;, a quote &#34;, an
// ampersand &amp;; a byte that is not valid UTF-8 becomes U+FFFD, 3 bytes).
const escapeBound = 6

// textBound bounds the encoded size of the texts ss.
func textBound(ss ...string) int {
	n := 0
	for _, s := range ss {
		n += escapeBound * len(s)
	}
	return n
}

// escapedTextLen returns the exact number of bytes Go's encoder writes for
// s as character data (xml.CharData through EncodeToken: a newline is
// written as is).
func escapedTextLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		n += escapedRuneLen(r, w)
		i += w
	}
	return n
}

// escapedRuneLen is the encoded size of the rune r, w bytes long in the
// text, as character data.
func escapedRuneLen(r rune, w int) int {
	switch r {
	case '"', '\'', '&', '\t', '\r':
		return 5 // &#34; &#39; &amp; &#x9; &#xD;
	case '<', '>':
		return 4 // &lt; &gt;
	case '\n':
		return 1
	}
	if !inCharRange(r) || (r == utf8.RuneError && w == 1) {
		return utf8.RuneLen(utf8.RuneError) // replaced by U+FFFD
	}
	return w
}

// inCharRange reports whether r is an XML 1.0 Char (what Go's encoder keeps).
func inCharRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// countingWriter counts what is written to it.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// encodedSize returns the number of bytes the stanza r takes on the
// component stream. It encodes r with Go's encoder, as mellium does, after
// the changes mellium's stanza encoder makes: a top-level stanza without a
// namespace is put in jabber:component:accept (written as an xmlns
// attribute), an empty id or from is left out, a missing id is added and
// xmlns attributes of namespaced elements are dropped.
func encodedSize(r xml.TokenReader) (int, error) {
	var cw countingWriter
	if err := encodeAsMellium(&cw, r); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// encodeAsMellium writes the stanza r to w as mellium writes it on the
// component stream (see encodedSize).
func encodeAsMellium(w io.Writer, r xml.TokenReader) error {
	e := xml.NewEncoder(w)
	depth := 0
	for {
		tok, err := r.Token()
		if tok != nil {
			switch t := tok.(type) {
			case xml.StartElement:
				depth++
				tok = asMelliumWrites(t, depth == 1)
			case xml.EndElement:
				if depth == 1 && t.Name.Space == "" && isStanzaName(t.Name.Local) {
					t.Name.Space = component.NSAccept
					tok = t
				}
				depth--
			}
			if eerr := e.EncodeToken(tok); eerr != nil {
				return fmt.Errorf("xmppside: measure stanza: %w", eerr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("xmppside: measure stanza: %w", err)
		}
	}
	if err := e.Flush(); err != nil {
		return fmt.Errorf("xmppside: measure stanza: %w", err)
	}
	return nil
}

// idPlaceholder stands for the id mellium adds to a stanza without one
// (16 characters in mellium v0.22.0; counted with room to spare).
const idPlaceholder = "0123456789abcdef0123456789abcdef"

// asMelliumWrites returns start as mellium's stanza encoder passes it to
// Go's encoder (see encodedSize).
func asMelliumWrites(start xml.StartElement, top bool) xml.StartElement {
	out := xml.StartElement{Name: start.Name, Attr: make([]xml.Attr, 0, len(start.Attr)+1)}
	stanza := top && isStanzaName(start.Name.Local) && start.Name.Space == ""
	hasID := false
	for _, a := range start.Attr {
		if stanza && (a.Name.Local == "id" || a.Name.Local == "from") && a.Value == "" {
			continue
		}
		if a.Name.Local == "xmlns" && start.Name.Space != "" {
			continue
		}
		if stanza && a.Name.Local == "id" {
			hasID = true
		}
		out.Attr = append(out.Attr, a)
	}
	if stanza {
		out.Name.Space = component.NSAccept
		if !hasID {
			out.Attr = append(out.Attr, xml.Attr{Name: xml.Name{Local: "id"}, Value: idPlaceholder})
		}
	}
	return out
}

func isStanzaName(local string) bool {
	return local == "message" || local == "presence" || local == "iq"
}

// tokensBound bounds the encoded size of a stanza held as tokens.
func tokensBound(toks []xml.Token) int {
	n := len(` xmlns=""`) + len(component.NSAccept) + len(` id=""`) + len(idPlaceholder)
	for _, tok := range toks {
		switch t := tok.(type) {
		case xml.StartElement:
			n += len("<>") + len(t.Name.Local)
			if t.Name.Space != "" {
				n += len(` xmlns=""`) + textBound(t.Name.Space)
			}
			for _, a := range t.Attr {
				n += len(` =""`) + len(a.Name.Local) + textBound(a.Value)
				if a.Name.Space != "" {
					// A prefix declaration: xmlns:prefix="space" prefix:
					n += 2*(len(`xmlns:="" `)+textBound(a.Name.Space)) + 32
				}
			}
		case xml.EndElement:
			n += len("</>") + len(t.Name.Local)
		case xml.CharData:
			n += escapeBound * len(t)
		case xml.Comment:
			n += len("<!---->") + len(t)
		case xml.ProcInst:
			n += len("<? ?>") + len(t.Target) + len(t.Inst)
		case xml.Directive:
			n += len("<!>") + len(t)
		}
	}
	return n
}

// readTokens reads the whole stanza r into copied tokens.
func readTokens(r xml.TokenReader) ([]xml.Token, error) {
	var toks []xml.Token
	for {
		tok, err := r.Token()
		if tok != nil {
			toks = append(toks, xml.CopyToken(tok))
		}
		if errors.Is(err, io.EOF) {
			return toks, nil
		}
		if err != nil {
			return nil, fmt.Errorf("xmppside: build stanza: %w", err)
		}
	}
}

// tooLarge returns the ErrStanzaTooLarge of a stanza of size bytes.
func tooLarge(what string, size, limit int) error {
	return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrStanzaTooLarge, what, size, limit)
}

// refused logs err when it is an ErrStanzaTooLarge (a stanza the caller
// wanted sent was not) and returns it.
func (c *Component) refused(err error) error {
	if errors.Is(err, ErrStanzaTooLarge) {
		c.log.Warn("xmpp stanza too large, not sent", "err", err)
	}
	return err
}

// checkSize returns nil when the stanza that build makes fits in
// MaxStanzaSize, and an ErrStanzaTooLarge otherwise. bound is an upper
// bound of its encoded size; build (which must make the same stanza each
// time) is called to measure it exactly only when bound exceeds the limit.
func (c *Component) checkSize(what string, bound int, build func() xml.TokenReader) error {
	limit := c.cfg.MaxStanzaSize
	if bound <= limit {
		return nil
	}
	size, err := encodedSize(build())
	if err != nil {
		return err
	}
	if size > limit {
		return tooLarge(what, size, limit)
	}
	return nil
}

// checkTokens is checkSize for a stanza held as tokens.
func (c *Component) checkTokens(what string, toks []xml.Token) error {
	return c.checkSize(what, tokensBound(toks), func() xml.TokenReader { return &tokenSlice{toks: toks} })
}
