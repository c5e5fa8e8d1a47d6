package imipside

import (
	"strconv"
	"strings"

	"imip-transport/imipside/wire"
)

var redacted = []byte("[redacted]")

// traceBlock writes b to the Trace writer, if any, as one line: "C: " or
// "S: " and the block's wire form as a Go quoted string. The body of a LOGN
// the client sends (the password digest) is replaced by "[redacted]".
func (s *Session) traceBlock(dir byte, b *wire.Block) {
	if s.trace == nil {
		return
	}
	out := *b
	if dir == 'C' && strings.EqualFold(b.Type, wire.TypeLOGN) && len(b.Body) > 0 {
		out.Body = redacted
	}
	raw, err := wire.AppendBlock(nil, &out)
	if err != nil {
		raw = []byte(b.TypeLine() + " (unprintable: " + err.Error() + ")")
	}
	line := make([]byte, 0, len(raw)+len(raw)/4+8)
	line = append(line, dir, ':', ' ')
	line = strconv.AppendQuote(line, string(raw))
	line = append(line, '\n')
	s.tmu.Lock()
	defer s.tmu.Unlock()
	s.trace.Write(line) // a failing trace must not disturb the session
}
