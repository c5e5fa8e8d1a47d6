package wire

import (
	"strconv"
	"strings"
)

// Header names with the exact spellings written on output.
// Lookups on input are case-insensitive.
const (
	HdrID              = "ID"
	HdrReference       = "Reference"
	HdrProtocol        = "Protocol"
	HdrAuthType        = "Auth-Type"
	HdrCapabilities    = "Capabilities"
	HdrKeepAlive       = "Keep-Alive"
	HdrRegistration    = "Registration"
	HdrService         = "Service"
	HdrServiceDisplay  = "ServiceDisplayName"
	HdrClient          = "Client"
	HdrBuddy           = "Buddy"
	HdrFrom            = "From"
	HdrTo              = "To"
	HdrACKType         = "ACK-Type"
	HdrContentType     = "Content-Type"
	HdrTimo            = "Timo"
	HdrTime            = "Time"
	HdrList            = "List"
	HdrMessageID       = "Message-ID" // [ours] mesg-ack extension
	ProtocolIMIP10     = "IMIP/1.0"
	AuthTypeMD5        = "imip-md5"
	ContentTypeText    = "text/plain;charset=utf-8"
	ACKTypeErrorsOnly  = "errors-only"
	ListBuddy          = "Buddy"
	CapabilityLists    = "server-lists"
	CapabilityMesgAck  = "mesg-ack" // [ours] mesg-ack extension
	DefaultKeepAlive   = 60
	DefaultPort        = 11319
	FirstClientBlockID = 1001
)

// Block types.
const (
	TypeHELO = "HELO"
	TypeLOGN = "LOGN"
	TypeSTAT = "STAT"
	TypeMESG = "MESG"
	TypeLIST = "LIST"
	TypePING = "PING"
	TypeDISC = "DISC"
	TypeACK  = "ACK"
)

// Header is one header line. Name keeps the spelling it was read or will be
// written with.
type Header struct {
	Name  string
	Value string
}

// Block is one IMIP block.
//
// Type is the first word of the type line ("LIST"); Arg is the rest of the
// type line after the first space ("ADD 6340564"), empty when there is none.
// Body holds the body bytes; Reader reuses its backing array from call to call.
//
// NoEmptyLine, on input, reports that a block without a body came without the
// empty line (Odigo style). On output it omits the empty line of a block
// without a body; Writer otherwise always writes it (Yahoo style).
type Block struct {
	Type        string
	Arg         string
	Headers     []Header
	Body        []byte
	NoEmptyLine bool
}

// Reset empties b, keeping its allocated storage for reuse.
func (b *Block) Reset() {
	b.Type, b.Arg = "", ""
	clear(b.Headers)
	b.Headers = b.Headers[:0]
	b.Body = b.Body[:0]
	b.NoEmptyLine = false
}

// Lookup returns the value of the first header called name, compared
// case-insensitively, and whether there was one.
func (b *Block) Lookup(name string) (string, bool) {
	for i := range b.Headers {
		if strings.EqualFold(b.Headers[i].Name, name) {
			return b.Headers[i].Value, true
		}
	}
	return "", false
}

// Get returns the value of the first header called name, or "".
func (b *Block) Get(name string) string {
	v, _ := b.Lookup(name)
	return v
}

// Add appends a header.
func (b *Block) Add(name, value string) {
	b.Headers = append(b.Headers, Header{Name: name, Value: value})
}

// Set replaces the value of the first header called name, or appends one.
func (b *Block) Set(name, value string) {
	for i := range b.Headers {
		if strings.EqualFold(b.Headers[i].Name, name) {
			b.Headers[i].Value = value
			return
		}
	}
	b.Add(name, value)
}

// Uint returns the header's value as a decimal number, and false when the
// header is absent or is not a plain unsigned decimal number.
func (b *Block) Uint(name string) (uint64, bool) {
	v, ok := b.Lookup(name)
	if !ok || v == "" || len(v) > 19 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// ID returns the block's ID header as a number.
func (b *Block) ID() (uint64, bool) { return b.Uint(HdrID) }

// Reference returns the block's Reference header as a number.
func (b *Block) Reference() (uint64, bool) { return b.Uint(HdrReference) }

// Word splits Arg at its first space: the first word and the rest.
// For "ADD 6340564" it returns "ADD" and "6340564".
func (b *Block) Word() (first, rest string) {
	first, rest, _ = strings.Cut(b.Arg, " ")
	return first, rest
}

// TypeLine returns the type line as written, without CRLF.
func (b *Block) TypeLine() string {
	if b.Arg == "" {
		return b.Type
	}
	return b.Type + " " + b.Arg
}
