package fsm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Every bucket and meta key is declared in buckets.go, every bucket is
// created on open, and the names, which existing stores and snapshots
// hold, are the ones they always were.
func TestBucketsAreDeclaredOnceAndFrozen(t *testing.T) {
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	buckets, keys := map[string]string{}, map[string]string{}
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					into := buckets
					switch {
					case strings.HasPrefix(n.Name, "bucket"):
					case strings.HasPrefix(n.Name, "key"):
						into = keys
					default:
						continue
					}
					if p != "buckets.go" {
						t.Errorf("%s declared in %s, not buckets.go", n.Name, p)
					}
					into[n.Name] = byteLiteral(t, n.Name, vs.Values[i])
				}
			}
		}
	}
	var created []string
	for _, b := range allBuckets() {
		created = append(created, string(b))
	}
	for name, v := range buckets {
		if !slices.Contains(created, v) {
			t.Errorf("%s (%q) is not created on open", name, v)
		}
	}
	slices.Sort(created)
	want := []string{"alertepisodes", "audit", "auditseq", "blobrefs", "domainreqs", "domains", "drafts", "due",
		"inbox", "inboxcount", "messages", "meta", "orgs", "orgsettings", "orgusers", "pwtokens", "retired",
		"seen", "sessexp", "sessions", "smsoutbox", "users"}
	if !slices.Equal(created, want) || len(buckets) != len(want) {
		t.Errorf("buckets %v (%d declared), want %v", created, len(buckets), want)
	}
	var metaKeys []string
	for _, v := range keys {
		metaKeys = append(metaKeys, v)
	}
	slices.Sort(metaKeys)
	wantKeys := []string{"admin_token", "applied", "audit_anchor", "audit_count", "audit_head", "audit_seq", "last_retry", "sms_gateway"}
	if !slices.Equal(metaKeys, wantKeys) {
		t.Errorf("meta keys %v, want %v", metaKeys, wantKeys)
	}
}

// byteLiteral reads a []byte("...") declaration.
func byteLiteral(t *testing.T, name string, e ast.Expr) string {
	t.Helper()
	if c, ok := e.(*ast.CallExpr); ok && len(c.Args) == 1 {
		if lit, ok := c.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				return s
			}
		}
	}
	t.Errorf("%s is not a []byte(\"...\") literal", name)
	return ""
}
