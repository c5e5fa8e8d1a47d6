package wire

import (
	"io"
	"testing"
)

// mesgBlock is a typical server MESG: sorted headers, a ~60-byte body.
var mesgBlock = []byte("MESG\r\n181\r\n" +
	"Content-Type: text/plain;charset=utf-8\r\n" +
	"From: 7744387 \"mawis76\"\r\n" +
	"ID: 19220\r\n" +
	"Timo: 2001-03-14T09:26:53Z\r\n" +
	"To: 6340564\r\n" +
	"\r\n" +
	"Hi there! Are you coming to the meeting at noon tomorrow?? :-)")

// loopReader serves data over and over, as much as fits in each Read.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func mesgForWrite() *Block {
	return &Block{
		Type: TypeMESG,
		Headers: []Header{
			{HdrContentType, ContentTypeText},
			{HdrFrom, `7744387 "mawis76"`},
			{HdrID, "19220"},
			{HdrTimo, "2001-03-14T09:26:53Z"},
			{HdrTo, "6340564"},
		},
		Body: []byte("Hi there! Are you coming to the meeting at noon tomorrow?? :-)"),
	}
}

func BenchmarkReadMESG(b *testing.B) {
	r := NewReader(&loopReader{data: mesgBlock}, Limits{})
	var blk Block
	b.SetBytes(int64(len(mesgBlock)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadBlock(&blk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "blocks/s")
}

func BenchmarkWriteMESG(b *testing.B) {
	w := NewWriter(io.Discard)
	blk := mesgForWrite()
	b.SetBytes(int64(len(mesgBlock)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteBlock(blk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "blocks/s")
}
