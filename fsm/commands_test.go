package fsm

import (
	"errors"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// typeList reads the list of command types from this package's source:
// every constant of type CommandType but the flag. The package is type
// checked on its own, without its imports, which is enough to know the
// constants' values.
func typeList(t *testing.T) map[string]CommandType {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	conf := types.Config{
		Importer: importerFunc(func(string) (*types.Package, error) { return nil, errors.New("not needed") }),
		Error:    func(error) {},
	}
	pkg, _ := conf.Check("lifeline/fsm", fset, files, nil)
	ct := pkg.Scope().Lookup("CommandType")
	if ct == nil {
		t.Fatal("no CommandType in the package")
	}
	out := map[string]CommandType{}
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok || c.Type() != ct.Type() || name == "IgnorableFlag" {
			continue
		}
		v, exact := constant.Uint64Val(c.Val())
		if !exact || v > 255 {
			t.Fatalf("%s = %v is not a type byte", name, c.Val())
		}
		out[name] = CommandType(v)
	}
	return out
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// Every type in the list has its row, named for it, and every row belongs
// to a type in the list; each row decodes into a command that encodes
// back under its own number.
func TestEveryTypeHasItsRow(t *testing.T) {
	list := typeList(t)
	if len(list) < int(TypePasswordSetByToken) {
		t.Fatalf("read %d types from the source; the reading is broken", len(list))
	}
	listed := map[CommandType]string{}
	for name, typ := range list {
		if other, dup := listed[typ]; dup {
			t.Errorf("%s and %s share number %d", name, other, typ)
		}
		listed[typ] = name
		r := &commands[typ]
		if !r.known() {
			t.Errorf("%s (%d) has no row in commands", name, typ)
			continue
		}
		if want := strings.TrimPrefix(name, "Type"); r.name != want {
			t.Errorf("%s (%d): row is for %s, want %s", name, typ, r.name, want)
		}
	}
	names := map[string]CommandType{}
	for i := range commands {
		typ, r := CommandType(i), &commands[i]
		if !r.known() {
			continue
		}
		if _, ok := listed[typ]; !ok {
			t.Errorf("row %d (%s) has no constant in the list", typ, r.name)
		}
		if other, dup := names[r.name]; dup {
			t.Errorf("rows %d and %d are both %s", other, typ, r.name)
		}
		names[r.name] = typ
		cmd := r.new()
		if reflect.TypeOf(cmd) != r.goType || r.goType.Elem().Name() != r.name {
			t.Errorf("row %d: constructor makes %T, row says %v named %s", typ, cmd, r.goType, r.name)
		}
		if back, ok := typeOf(cmd); !ok || back != typ {
			t.Errorf("row %d: %T maps back to %d (%v)", typ, cmd, back, ok)
		}
		data, err := Encode(cmd)
		if err != nil || CommandType(data[0]) != typ {
			t.Errorf("row %d: Encode(%T) = %x, %v", typ, cmd, data, err)
			continue
		}
		got, err := Decode(data)
		if err != nil || reflect.TypeOf(got) != r.goType {
			t.Errorf("row %d: Decode = %T, %v", typ, got, err)
		}
		if typ.String() != r.name {
			t.Errorf("row %d: String() = %q", typ, typ.String())
		}
	}
	if s := CommandType(36).String(); s != "CommandType(36)" {
		t.Errorf("an unknown type prints as %q", s)
	}
	if _, err := Encode(nil); err == nil {
		t.Error("Encode(nil) succeeded")
	}
	if _, err := Encode(SpoolAdd{}); err == nil {
		t.Error("a command passed by value was encoded")
	}
}

// The baseline is what released nodes apply. Its numbers and the names
// they stand for never change: a renumbered or renamed baseline type would
// be applied by an older node as something else.
func TestBaselineIsFrozen(t *testing.T) {
	frozen := map[CommandType]string{
		1: "SetAdminToken", 2: "DomainPut", 3: "DomainRemove", 4: "SpoolAdd",
		5: "AttemptStart", 6: "AttemptResult", 7: "DomainState", 8: "DelayNotified",
		9: "QueueOp", 10: "SpoolAddSummary", 11: "MarkRead", 12: "OrgPut",
		13: "UserAdd", 14: "UserSet", 15: "TOTPSet", 16: "SessionCreate",
		17: "SessionTouch", 18: "SessionDelete", 19: "AuditAdd", 20: "DraftPut",
		21: "DraftDelete", 22: "Audited", 23: "DomainSet", 24: "DomainRequest",
		25: "DomainApprove", 26: "DomainRequestDelete", 27: "OrgSettingsSet",
		28: "SMSGatewaySet", 29: "AlertFire", 30: "AlertSMSDone", 31: "UserImport",
		32: "UserEdit", 33: "UserDelete", 34: "PasswordTokens", 35: "PasswordSetByToken",
		60: "NoticeAdd",
	}
	for i := range 256 {
		typ := CommandType(i)
		name, in := frozen[typ]
		if InBaseline(typ) != in {
			t.Errorf("InBaseline(%d) = %v, frozen baseline says %v", i, InBaseline(typ), in)
		}
		if in && commands[typ].name != name {
			t.Errorf("baseline type %d is %q in the registry, frozen as %q", i, commands[typ].name, name)
		}
	}
}
