package xmppside

import (
	"io"
	"regexp"
	"sync"
)

// tracer writes the traffic copy of Config.Trace, with XEP-0077 passwords
// redacted.
type tracer struct {
	mu sync.Mutex
	w  io.Writer
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

func (t *tracer) trace(dir string, p []byte) {
	p = redact(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = io.WriteString(t.w, dir)
	_, _ = t.w.Write(p)
	_, _ = io.WriteString(t.w, "\n")
}
