package fsm

import (
	"slices"
	"testing"
)

func TestKnownTypesAgreeWithDecode(t *testing.T) {
	known := KnownTypes()
	for _, typ := range []CommandType{TypeSetAdminToken, TypeSpoolAdd, TypeDraftDelete, TypeAudited, TypePasswordSetByToken, TypeNoticeAdd} {
		if !known.Has(typ) {
			t.Errorf("type %d is decoded but not reported known", typ)
		}
	}
	// 0 was never a type; 36 and 61 are the next free numbers; an
	// ignorable type Decode skips is not one this build can apply.
	for _, typ := range []CommandType{0, 36, 59, 61, 0x7f, IgnorableFlag | 0x11, 0xff} {
		if known.Has(typ) {
			t.Errorf("type %d reported known", typ)
		}
	}
	// Every type the probe reports is one Decode answers without
	// UnknownCommandError, and the other way round.
	for i := range 256 {
		typ := CommandType(i)
		cmd, err := Decode([]byte{byte(i)})
		_, unknown := err.(*UnknownCommandError)
		decodes := !unknown && !(err == nil && cmd == nil)
		if decodes != known.Has(typ) {
			t.Errorf("type %d: Decode knows it %v, KnownTypes %v", i, decodes, known.Has(typ))
		}
	}
}

func TestBaseline(t *testing.T) {
	known := KnownTypes()
	base := BaselineTypes()
	// A release may add types but never drop one every release applies.
	for _, typ := range base.Types() {
		if !known.Has(typ) {
			t.Errorf("baseline type %d is unknown to this build", typ)
		}
		if typ&IgnorableFlag != 0 {
			t.Errorf("baseline holds ignorable type %d", typ)
		}
		if Gated(typ) {
			t.Errorf("baseline type %d is gated", typ)
		}
	}
	// The non-ignorable types this release adds beyond the baseline: a
	// new type belongs here, never in InBaseline, because nodes of
	// earlier releases cannot apply it (docs/design.md §3.3).
	var beyond []CommandType
	for _, typ := range known.Types() {
		if typ&IgnorableFlag == 0 && !base.Has(typ) {
			beyond = append(beyond, typ)
		}
	}
	wantBeyond := []CommandType(nil)
	if !slices.Equal(beyond, wantBeyond) {
		t.Errorf("non-ignorable types beyond the baseline: %v, want %v", beyond, wantBeyond)
	}
	if !Gated(36) || !Gated(0x7f) || Gated(IgnorableFlag|36) || Gated(TypeSpoolAdd) {
		t.Error("Gated disagrees with the baseline")
	}
}

func TestTypeSetBits(t *testing.T) {
	var s TypeSet
	for _, typ := range []CommandType{0, 7, 8, 255} {
		s.Add(typ)
	}
	if got := s.Types(); !slices.Equal(got, []CommandType{0, 7, 8, 255}) {
		t.Errorf("Types() = %v", got)
	}
	if s.Has(1) || s.Has(254) {
		t.Error("unexpected member")
	}
	p, ok := ParseTypeSet(s[:])
	if !ok || p != s {
		t.Errorf("ParseTypeSet round trip: %v %v", p, ok)
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		if _, ok := ParseTypeSet(bad); ok {
			t.Errorf("ParseTypeSet accepted %d bytes", len(bad))
		}
	}
}

func TestGatedTypes(t *testing.T) {
	spool, err := Encode(&SpoolAdd{ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	newType := []byte{36, 0x80}
	wrapNew, err := Encode(&Audited{Entry: AuditEntry{Kind: "k"}, Cmd: newType})
	if err != nil {
		t.Fatal(err)
	}
	wrapOld, err := Encode(&Audited{Entry: AuditEntry{Kind: "k"}, Cmd: spool})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		want []CommandType
	}{
		{"empty", nil, nil},
		{"baseline", spool, nil},
		{"ignorable", []byte{byte(IgnorableFlag | 36), 0x80}, nil},
		{"new type", newType, []CommandType{36}},
		{"audited baseline", wrapOld, nil},
		{"audited new type", wrapNew, []CommandType{36}},
	}
	for _, c := range cases {
		if got := GatedTypes(c.data); !slices.Equal(got, c.want) {
			t.Errorf("%s: GatedTypes = %v, want %v", c.name, got, c.want)
		}
	}
}
