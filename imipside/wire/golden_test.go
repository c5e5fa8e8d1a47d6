package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// golden is one block in both forms: its exact bytes and its Block.
type golden struct {
	name  string
	wire  string
	block Block
}

// hd builds a header list from name, value pairs.
func hd(kv ...string) []Header {
	if len(kv)%2 != 0 {
		panic("hd: odd number of strings")
	}
	h := make([]Header, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		h = append(h, Header{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

// Salts and the check vector of docs/PROTOCOL.md §4.
const (
	checkSalt     = "1919833824"
	checkPassword = "password"
	checkDigest   = "c35900c24a82592dd2d0db27c647ff17"
	streamSalt    = "97841749" // the salt of the back-to-back stream in §2
)

// goldens holds every worked block of docs/PROTOCOL.md §2 (the table, with the SIZE
// it gives) and blocks built by hand from the rules of §4-§10 (SIZE counted
// by the test below, and by hand in the comment).
var goldens = []golden{
	// §2 table, [wire].
	{"C HELO", "HELO\r\n32\r\nID: 1001\r\nProtocol: IMIP/1.0\r\n\r\n",
		Block{Type: "HELO", Headers: hd("ID", "1001", "Protocol", "IMIP/1.0")}},
	{"C STAT", "STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n",
		Block{Type: "STAT", Arg: "ONLINE", Headers: hd("ID", "1003")}},
	{"S ACK", "ACK 600\r\n28\r\nID: 19195\r\nReference: 1003\r\n",
		Block{Type: "ACK", Arg: "600", Headers: hd("ID", "19195", "Reference", "1003"), NoEmptyLine: true}},
	{"C PING", "PING\r\n12\r\nID: 1004\r\n\r\n",
		Block{Type: "PING", Headers: hd("ID", "1004")}},
	{"S LOGN", "LOGN 6340564\r\n28\r\nID: 19194\r\nReference: 1002\r\n",
		Block{Type: "LOGN", Arg: "6340564", Headers: hd("ID", "19194", "Reference", "1002"), NoEmptyLine: true}},
	{"C LOGN", "LOGN 6340564\r\n93\r\nID: 1002\r\nClient: Yahoo! IMIP Client\r\nAuth-Type: imip-md5\r\n\r\n" + checkDigest,
		Block{Type: "LOGN", Arg: "6340564", Headers: hd("ID", "1002", "Client", "Yahoo! IMIP Client", "Auth-Type", "imip-md5"),
			Body: []byte(checkDigest)}},

	// §4 step 2: the server HELO, headers sorted, salt as body. Registration
	// URL and ID are illustrative. 21+28+11+16+20+45+20+27 headers, 2 empty
	// line, 8 salt = 198.
	{"S HELO", "HELO\r\n198\r\n" +
		"Auth-Type: imip-md5\r\n" +
		"Capabilities: server-lists\r\n" +
		"ID: 19193\r\n" +
		"Keep-Alive: 60\r\n" +
		"Protocol: IMIP/1.0\r\n" +
		"Registration: http://www.odigo.com/register\r\n" +
		"Service: odigo.com\r\n" +
		"ServiceDisplayName: Odigo\r\n" +
		"\r\n" + streamSalt,
		Block{Type: "HELO", Headers: hd("Auth-Type", "imip-md5", "Capabilities", "server-lists", "ID", "19193",
			"Keep-Alive", "60", "Protocol", "IMIP/1.0", "Registration", "http://www.odigo.com/register",
			"Service", "odigo.com", "ServiceDisplayName", "Odigo"), Body: []byte(streamSalt)}},
	// §4 step 4: login success with the contact list. 42+11+17 = 70.
	{"S LOGN Buddy", "LOGN 6340564\r\n70\r\nBuddy: 7744387 \"mawis76\",1234567 \"other\"\r\nID: 19196\r\nReference: 1002\r\n",
		Block{Type: "LOGN", Arg: "6340564", Headers: hd("Buddy", `7744387 "mawis76",1234567 "other"`, "ID", "19196",
			"Reference", "1002"), NoEmptyLine: true}},
	// §4 step 5: login failure. 11+17 = 28.
	{"S ACK 810", "ACK 810\r\n28\r\nID: 19200\r\nReference: 1002\r\n",
		Block{Type: "ACK", Arg: "810", Headers: hd("ID", "19200", "Reference", "1002"), NoEmptyLine: true}},
	// §5: presence push. 15+11 = 26.
	{"S STAT", "STAT ONLINE\r\n26\r\nFrom: 7744387\r\nID: 19197\r\n",
		Block{Type: "STAT", Arg: "ONLINE", Headers: hd("From", "7744387", "ID", "19197"), NoEmptyLine: true}},
	// §7: server message. 40+25+11+28+13+2+17 = 136.
	{"S MESG", "MESG\r\n136\r\n" +
		"Content-Type: text/plain;charset=utf-8\r\n" +
		"From: 7744387 \"mawis76\"\r\n" +
		"ID: 19198\r\n" +
		"Timo: 2001-03-14T09:26:53Z\r\n" +
		"To: 6340564\r\n" +
		"\r\nHello from Odigo!",
		Block{Type: "MESG", Headers: hd("Content-Type", "text/plain;charset=utf-8", "From", `7744387 "mawis76"`,
			"ID", "19198", "Timo", "2001-03-14T09:26:53Z", "To", "6340564"), Body: []byte("Hello from Odigo!")}},
	// §7: client message. 10+13+23+15+2+16 = 79.
	{"C MESG", "MESG\r\n79\r\nID: 1005\r\nTo: 7744387\r\nACK-Type: errors-only\r\nFrom: 6340564\r\n\r\nHi, how are you?",
		Block{Type: "MESG", Headers: hd("ID", "1005", "To", "7744387", "ACK-Type", "errors-only", "From", "6340564"),
			Body: []byte("Hi, how are you?")}},
	// §8: server list request with request text. 25+11+13+2+27 = 78.
	{"S LIST ADD", "LIST ADD\r\n78\r\nFrom: 7744387 \"mawis76\"\r\nID: 19199\r\nList: Buddy\r\n\r\nPlease add me to your list.",
		Block{Type: "LIST", Arg: "ADD", Headers: hd("From", `7744387 "mawis76"`, "ID", "19199", "List", "Buddy"),
			Body: []byte("Please add me to your list.")}},
	// §8: client accepts. 10+15+2 = 27.
	{"C LIST ACCEPT", "LIST ACCEPT 7744387 \"mawis76\"\r\n27\r\nID: 1006\r\nFrom: 6340564\r\n\r\n",
		Block{Type: "LIST", Arg: `ACCEPT 7744387 "mawis76"`, Headers: hd("ID", "1006", "From", "6340564")}},
	// §9: logout. 10+2 = 12.
	{"C DISC", "DISC\r\n12\r\nID: 1007\r\n\r\n",
		Block{Type: "DISC", Headers: hd("ID", "1007")}},
}

// sameBlock reports how got differs from want, or "" when they are equal.
// A nil and an empty Body or Headers are equal.
func sameBlock(got, want *Block) string {
	var diffs []string
	if got.Type != want.Type {
		diffs = append(diffs, fmt.Sprintf("Type %q, want %q", got.Type, want.Type))
	}
	if got.Arg != want.Arg {
		diffs = append(diffs, fmt.Sprintf("Arg %q, want %q", got.Arg, want.Arg))
	}
	if len(got.Headers) != len(want.Headers) {
		diffs = append(diffs, fmt.Sprintf("Headers %q, want %q", got.Headers, want.Headers))
	} else {
		for i := range got.Headers {
			if got.Headers[i] != want.Headers[i] {
				diffs = append(diffs, fmt.Sprintf("Headers[%d] %q, want %q", i, got.Headers[i], want.Headers[i]))
			}
		}
	}
	if !bytes.Equal(got.Body, want.Body) {
		diffs = append(diffs, fmt.Sprintf("Body %q, want %q", got.Body, want.Body))
	}
	if got.NoEmptyLine != want.NoEmptyLine {
		diffs = append(diffs, fmt.Sprintf("NoEmptyLine %v, want %v", got.NoEmptyLine, want.NoEmptyLine))
	}
	return strings.Join(diffs, "; ")
}

// declaredSize returns the SIZE line of one block's wire form and the number
// of bytes after the size line.
func declaredSize(t *testing.T, wire string) (declared, counted int) {
	t.Helper()
	_, rest, ok := strings.Cut(wire, "\r\n")
	if !ok {
		t.Fatalf("no type line in %q", wire)
	}
	sizeLine, content, ok := strings.Cut(rest, "\r\n")
	if !ok {
		t.Fatalf("no size line in %q", wire)
	}
	n, err := strconv.Atoi(sizeLine)
	if err != nil {
		t.Fatalf("size line %q: %v", sizeLine, err)
	}
	return n, len(content)
}

func TestGoldenSizes(t *testing.T) {
	for i, g := range goldens {
		declared, counted := declaredSize(t, g.wire)
		if declared != counted {
			t.Errorf("%d %s: SIZE line says %d, %d bytes follow", i, g.name, declared, counted)
		}
		if n := ContentSize(&g.block); n != declared {
			t.Errorf("%d %s: ContentSize = %d, want %d", i, g.name, n, declared)
		}
	}
}

func TestGoldenRead(t *testing.T) {
	for i, g := range goldens {
		r := NewReader(strings.NewReader(g.wire), Limits{})
		var b Block
		if err := r.ReadBlock(&b); err != nil {
			t.Errorf("%d %s: ReadBlock: %v", i, g.name, err)
			continue
		}
		if d := sameBlock(&b, &g.block); d != "" {
			t.Errorf("%d %s: %s", i, g.name, d)
		}
		if err := r.ReadBlock(&b); err != io.EOF {
			t.Errorf("%d %s: second ReadBlock = %v, want io.EOF", i, g.name, err)
		}
	}
}

func TestGoldenWrite(t *testing.T) {
	for i, g := range goldens {
		var buf bytes.Buffer
		if err := NewWriter(&buf).WriteBlock(&g.block); err != nil {
			t.Errorf("%d %s: WriteBlock: %v", i, g.name, err)
			continue
		}
		if got := buf.String(); got != g.wire {
			t.Errorf("%d %s: wrote\n%q\nwant\n%q", i, g.name, got, g.wire)
		}
		app, err := AppendBlock([]byte("prefix"), &g.block)
		if err != nil || string(app) != "prefix"+g.wire {
			t.Errorf("%d %s: AppendBlock = %q, %v", i, g.name, app, err)
		}
	}
}

// An Odigo-style block (no empty line) read and written again in Yahoo style
// gains exactly the empty line, and SIZE grows by 2.
func TestGoldenStyleSwitch(t *testing.T) {
	var b Block
	if err := NewReader(strings.NewReader("ACK 600\r\n28\r\nID: 19195\r\nReference: 1003\r\n"), Limits{}).ReadBlock(&b); err != nil {
		t.Fatal(err)
	}
	if !b.NoEmptyLine {
		t.Fatal("NoEmptyLine = false for a block without the empty line")
	}
	b.NoEmptyLine = false
	var buf bytes.Buffer
	if err := NewWriter(&buf).WriteBlock(&b); err != nil {
		t.Fatal(err)
	}
	if want := "ACK 600\r\n30\r\nID: 19195\r\nReference: 1003\r\n\r\n"; buf.String() != want {
		t.Fatalf("wrote %q, want %q", buf.String(), want)
	}
	// A block with a body always gets its empty line, whatever NoEmptyLine says.
	buf.Reset()
	if err := NewWriter(&buf).WriteBlock(&Block{Type: "MESG", Body: []byte("x"), NoEmptyLine: true}); err != nil {
		t.Fatal(err)
	}
	if want := "MESG\r\n3\r\n\r\nx"; buf.String() != want {
		t.Fatalf("wrote %q, want %q", buf.String(), want)
	}
}

func TestCheckVector(t *testing.T) {
	if got := AuthDigest(checkSalt, checkPassword); got != checkDigest {
		t.Fatalf("AuthDigest(%q, %q) = %q, want %q", checkSalt, checkPassword, got, checkDigest)
	}
	// The C LOGN golden carries exactly that digest as its body.
	for _, g := range goldens {
		if g.name == "C LOGN" && string(g.block.Body) != AuthDigest(checkSalt, checkPassword) {
			t.Fatalf("C LOGN body %q is not the check vector digest", g.block.Body)
		}
	}
	if AuthDigest(checkSalt, "Password") == checkDigest {
		t.Fatal("AuthDigest ignores the password")
	}
	if AuthDigest("1919833825", checkPassword) == checkDigest {
		t.Fatal("AuthDigest ignores the salt")
	}
}

func goldenByName(t testing.TB, name string) golden {
	t.Helper()
	for _, g := range goldens {
		if g.name == name {
			return g
		}
	}
	t.Fatalf("no golden %q", name)
	return golden{}
}

// errPastEnd is what stopReader returns once its data is used up: a Reader
// that returns it tried to read beyond what it was given.
var errPastEnd = errors.New("read past the data given")

// stopReader serves data, at most chunk bytes per Read (all when chunk is
// 0), then fails every Read with errPastEnd and counts those calls.
type stopReader struct {
	data  []byte
	chunk int
	past  int
}

func (s *stopReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		s.past++
		return 0, errPastEnd
	}
	n := len(p)
	if s.chunk > 0 && n > s.chunk {
		n = s.chunk
	}
	n = copy(p, s.data[:min(n, len(s.data))])
	s.data = s.data[n:]
	return n, nil
}

// TestBackToBack reads the server stream of docs/PROTOCOL.md §2, where the salt body
// of the server HELO is followed at once by the next block, without CRLF.
// The Reader must return the HELO without reading further, since a peer may
// send nothing more until it answers.
func TestBackToBack(t *testing.T) {
	helo, logn := goldenByName(t, "S HELO"), goldenByName(t, "S LOGN")
	stream := helo.wire + logn.wire
	if want := "ServiceDisplayName: Odigo\r\n\r\n97841749LOGN 6340564\r\n28\r\n"; !strings.Contains(stream, want) {
		t.Fatalf("stream lacks %q", want)
	}
	for _, chunk := range []int{0, 1, 7} {
		// Only the HELO is available: ReadBlock must not ask for more.
		src := &stopReader{data: []byte(helo.wire), chunk: chunk}
		r := NewReader(src, Limits{})
		var b Block
		if err := r.ReadBlock(&b); err != nil {
			t.Fatalf("chunk %d: HELO alone: %v", chunk, err)
		}
		if src.past != 0 {
			t.Fatalf("chunk %d: Reader read past the end of the HELO block", chunk)
		}
		if d := sameBlock(&b, &helo.block); d != "" {
			t.Fatalf("chunk %d: %s", chunk, d)
		}

		// Both blocks back to back.
		r = NewReader(&stopReader{data: []byte(stream), chunk: chunk}, Limits{})
		for i, want := range []*Block{&helo.block, &logn.block} {
			if err := r.ReadBlock(&b); err != nil {
				t.Fatalf("chunk %d: block %d: %v", chunk, i, err)
			}
			if d := sameBlock(&b, want); d != "" {
				t.Fatalf("chunk %d: block %d: %s", chunk, i, d)
			}
		}
		if err := r.ReadBlock(&b); !errors.Is(err, errPastEnd) {
			t.Fatalf("chunk %d: after the stream: %v, want errPastEnd", chunk, err)
		}
	}
}
