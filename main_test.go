package main

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// synopsis is how the help shows a verb: its path and the first line of
// its arguments.
func synopsis(v verb) string {
	s := "lifeline " + v.path
	if first := strings.Split(v.args, "\n")[0]; first != "" {
		s += " " + first
	}
	return s
}

// Every verb appears in the help of every group above it, so the help and
// the table cannot drift apart.
func TestHelpListsEveryVerbBelowIt(t *testing.T) {
	vs := verbs()
	groups := map[string]bool{"": true}
	for _, v := range vs {
		if v.run == nil {
			groups[v.path] = true
		}
	}
	for g := range groups {
		args := append(strings.Fields(g), "--help")
		code, out, errb := runCLI(args...)
		if code != 0 || errb != "" {
			t.Fatalf("lifeline %s: exit %d, stderr %q", strings.Join(args, " "), code, errb)
		}
		for _, v := range vs {
			if v.run != nil && below(v.path, g) && !strings.Contains(out, synopsis(v)+"\n") {
				t.Errorf("lifeline %s lacks %q", strings.Join(args, " "), synopsis(v))
			}
		}
	}
}

func TestAdminHelpListsSnapshotAndLog(t *testing.T) {
	code, out, _ := runCLI("admin", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"lifeline admin snapshot save FILE",
		"lifeline admin snapshot restore FILE",
		"lifeline admin log search",
		"lifeline admin domain add NAME",
		"lifeline admin queue flush",
		"lifeline admin cluster transfer",
		"lifeline admin user import FILE",
		"lifeline admin alerts gateway",
		"lifeline admin audit verify",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("admin --help lacks %q", want)
		}
	}
	if strings.Contains(out, "lifeline node") {
		t.Error("admin --help lists verbs outside admin")
	}
}

// Every group has a heading, no path is in the table twice, and a heading
// has verbs below it: what the help and dispatch take for granted.
func TestVerbTableIsWellFormed(t *testing.T) {
	vs := verbs()
	seen := map[string]bool{}
	for _, v := range vs {
		if seen[v.path] {
			t.Errorf("%q is in the table twice", v.path)
		}
		seen[v.path] = true
		if v.summary == "" {
			t.Errorf("%q has no summary", v.path)
		}
		if v.run == nil && !hasBelow(vs, v.path) {
			t.Errorf("heading %q has no verb below it", v.path)
		}
	}
	for _, v := range vs {
		words := strings.Fields(v.path)
		for i := range words {
			if p := strings.Join(words[:i], " "); !seen[p] {
				t.Errorf("%q lies under %q, which has no row", v.path, p)
			}
		}
	}
}

// Every verb reaches its own flags: an unknown flag is a usage error
// (exit 2) reported by the verb's flag set, not an unknown command.
func TestEveryVerbDispatches(t *testing.T) {
	for _, v := range verbs() {
		if v.run == nil {
			continue
		}
		code, _, errb := runCLI(append(strings.Fields(v.path), "--no-such-flag")...)
		if code != 2 || !strings.Contains(errb, "flag provided but not defined: -no-such-flag") {
			t.Errorf("lifeline %s --no-such-flag: exit %d, stderr %q", v.path, code, errb)
		}
	}
}

func TestUnknownVerbPrintsNearestHelp(t *testing.T) {
	code, out, errb := runCLI("admin", "domain", "frob")
	if code != 2 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errb, `lifeline admin domain: unknown command "frob"`) || !strings.Contains(errb, "lifeline admin domain add NAME") {
		t.Errorf("stderr %q", errb)
	}
	if strings.Contains(errb, "lifeline admin queue") {
		t.Error("the help of an unknown domain verb lists more than the domain verbs")
	}
	if code, _, errb := runCLI("frob"); code != 2 || !strings.Contains(errb, `lifeline: unknown command "frob"`) {
		t.Errorf("lifeline frob: exit %d, stderr %q", code, errb)
	}
	if code, _, errb := runCLI("admin"); code != 2 || !strings.Contains(errb, "lifeline admin snapshot save") {
		t.Errorf("lifeline admin: exit %d, stderr %q", code, errb)
	}
	if code, _, errb := runCLI(); code != 2 || !strings.Contains(errb, "lifeline node") {
		t.Errorf("lifeline: exit %d, stderr %q", code, errb)
	}
	if code, out, _ := runCLI("help", "admin", "snapshot"); code != 0 || !strings.Contains(out, "lifeline admin snapshot restore FILE") {
		t.Errorf("lifeline help admin snapshot: exit %d, stdout %q", code, out)
	}
}

// fakeAPI answers the log and snapshot endpoints as a node does and notes
// the token of every request.
type fakeAPI struct {
	*httptest.Server
	mu       sync.Mutex
	tokens   []string
	restored []byte
}

func newFakeAPI(t *testing.T, backup []byte) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.tokens = append(f.tokens, r.Header.Get("Authorization"))
		f.mu.Unlock()
		switch r.Method + " " + r.URL.Path {
		case "GET /api/v1/log":
			if r.URL.Query().Get("sender") != "alice@example.test" {
				http.Error(w, `{"error":"sender missing"}`, http.StatusBadRequest)
				return
			}
			io.WriteString(w, `{"entries":[{"time":"2026-01-02T03:04:05Z","node":"n1","kind":"received","status":"queued","queue_id":"Q1","from":"alice@example.test","to":["bob@example.test"]}],"next":""}`)
		case "GET /api/v1/log.csv":
			io.WriteString(w, "time,node\n2026-01-02T03:04:05Z,n1\n")
		case "GET /api/v1/snapshot":
			w.Write(backup)
		case "POST /api/v1/snapshot/restore":
			b, _ := io.ReadAll(r.Body)
			f.mu.Lock()
			f.restored = b
			f.mu.Unlock()
			if r.URL.Query().Get("force") != "1" {
				http.Error(w, `{"error":"the cluster already holds state"}`, http.StatusConflict)
				return
			}
			io.WriteString(w, `{"backup":{"node":"n1","created":"2026-01-02T03:04:05Z"},"messages":2,"domains":1,"bodies_restored":2,"seconds":0.5}`)
		default:
			http.Error(w, `{"error":"no such endpoint"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) allTokens(t *testing.T, want string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tokens) == 0 {
		t.Fatal("no request reached the node")
	}
	for _, tok := range f.tokens {
		if tok != "Bearer "+want {
			t.Fatalf("a request carried %q", tok)
		}
	}
}

func backupArchive(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct{ name, body string }{
		{"lifeline-backup.json", `{"format":1,"node":"n1","applied_index":7,"messages":2,"domains":1,"bodies":2,"body_bytes":10}`},
		{"bodies/a", "hello"},
		{"bodies/b", "world"},
	} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.body))})
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The log and snapshot verbs talk to the node through the API client, with
// the operator token, and print what they always printed.
func TestLogAndSnapshotVerbsUseTheAPI(t *testing.T) {
	archive := backupArchive(t)
	api := newFakeAPI(t, archive)
	conn := []string{"--server", api.URL, "--token", "T0K"}

	code, out, errb := runCLI(append([]string{"admin", "log", "search", "--sender", "alice@example.test"}, conn...)...)
	if code != 0 || !strings.Contains(out, "Q1") || !strings.Contains(out, "<alice@example.test>") {
		t.Fatalf("log search: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	code, out, errb = runCLI(append([]string{"admin", "log", "search"}, conn...)...)
	if code != 1 || !strings.Contains(errb, "lifeline admin: 400: sender missing") {
		t.Fatalf("log search refused: exit %d, stderr %q", code, errb)
	}
	code, out, _ = runCLI(append([]string{"admin", "log", "search", "--csv"}, conn...)...)
	if code != 0 || out != "time,node\n2026-01-02T03:04:05Z,n1\n" {
		t.Fatalf("log search --csv: exit %d, stdout %q", code, out)
	}

	file := filepath.Join(t.TempDir(), "backup.tar")
	code, out, errb = runCLI(append([]string{"admin", "snapshot", "save", file}, conn...)...)
	if code != 0 || !strings.Contains(out, "saved "+file+": 2 messages, 1 domains, 2 bodies (10 bytes), state at index 7, from n1 (3 archive entries)") {
		t.Fatalf("snapshot save: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, archive) {
		t.Fatal("the saved file differs from the archive the node sent")
	}

	code, _, errb = runCLI(append([]string{"admin", "snapshot", "restore", file}, conn...)...)
	if code != 1 || !strings.Contains(errb, "409") {
		t.Fatalf("snapshot restore without --force: exit %d, stderr %q", code, errb)
	}
	code, out, errb = runCLI(append([]string{"admin", "snapshot", "restore", file, "--force"}, conn...)...)
	if code != 0 || !strings.Contains(out, "restored "+file+" (taken on n1 at 2026-01-02 03:04:05Z): 2 messages, 1 domains, 2 bodies in 0.5s") {
		t.Fatalf("snapshot restore: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	api.mu.Lock()
	restored := api.restored
	api.mu.Unlock()
	if !bytes.Equal(restored, archive) {
		t.Fatal("the node did not receive the backup file as it is")
	}
	api.allTokens(t, "T0K")

	code, _, errb = runCLI(append([]string{"admin", "snapshot", "save"}, conn...)...)
	if code != 2 || !strings.Contains(errb, "lifeline admin snapshot restore FILE") {
		t.Fatalf("snapshot save without FILE: exit %d, stderr %q", code, errb)
	}
}
