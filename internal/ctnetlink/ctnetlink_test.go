package ctnetlink

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func attr(typ uint16, v ...[]byte) []byte {
	var val []byte
	for _, b := range v {
		val = append(val, b...)
	}
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(val)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func TestDecodeTuple(t *testing.T) {
	const nested = 0x8000
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.2")
	s4, d16 := src.As4(), dst.As16()
	v := attr(TupleIP|nested, attr(IPv4Src, s4[:]), attr(IPv6Dst, d16[:]))
	v = append(v, attr(TupleProto|nested, attr(ProtoNum, []byte{17}), attr(ProtoSrcPort, be16(5353)), attr(ProtoDstPort, be16(53)))...)
	var got Tuple
	DecodeTuple(v, &got)
	want := Tuple{Proto: 17, Src: src, Dst: netip.MustParseAddr("10.0.0.2"), Sport: 5353, Dport: 53}
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	// A length past the buffer ends the walk: nothing read, no panic.
	bad := append(attr(TupleIP|nested, attr(IPv4Src, s4[:])), 0xff, 0x00, 1, 0)
	binary.NativeEndian.PutUint16(bad, 200)
	var none Tuple
	DecodeTuple(bad, &none)
	if none != (Tuple{}) {
		t.Errorf("decoded %+v from a malformed attribute", none)
	}
}
