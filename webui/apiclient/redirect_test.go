package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const token = "operator-secret"

// recorder is a server that notes the Authorization header of every
// request it gets.
type recorder struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func newRecorder(t *testing.T, tls bool, h http.HandlerFunc) *recorder {
	r := &recorder{}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.auths = append(r.auths, req.Header.Get("Authorization"))
		r.mu.Unlock()
		h(w, req)
	})
	if tls {
		r.Server = httptest.NewTLSServer(wrapped)
	} else {
		r.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) sawToken() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.auths {
		if strings.Contains(a, token) {
			return true
		}
	}
	return false
}

func (r *recorder) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.auths)
}

func (r *recorder) hostPort() string {
	return strings.TrimPrefix(strings.TrimPrefix(r.URL, "https://"), "http://")
}

// follower answers the status report with members at the given web
// addresses and redirects membership changes to target, as a follower
// sends them to its leader.
func follower(t *testing.T, tls bool, target func() string, announced func() []string) *recorder {
	return newRecorder(t, tls, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorised"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/api/v1/status" {
			var members []map[string]any
			for _, a := range announced() {
				members = append(members, map[string]any{"Name": a, "Meta": map[string]any{"HTTPAddr": a}})
			}
			json.NewEncoder(w).Encode(map[string]any{"members": members})
			return
		}
		http.Redirect(w, r, target()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
}

// leader accepts the membership change if it comes with the token.
func leader(t *testing.T, tls bool) *recorder {
	return newRecorder(t, tls, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorised"}`, http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{}`))
	})
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// A follower's redirect to the leader, another host:port that the cluster
// announces, carries the token.
func TestRedirectToAnnouncedLeaderCarriesToken(t *testing.T) {
	l := leader(t, false)
	f := follower(t, false, func() string { return l.URL }, func() []string { return []string{"127.0.0.9:1", l.hostPort()} })
	c := New(f.URL, token)
	if err := c.RemoveServer(testCtx(t), "n3"); err != nil {
		t.Fatalf("remove through a follower: %v", err)
	}
	if !l.sawToken() {
		t.Fatal("the leader did not get the token")
	}
}

// A redirect to a host the cluster does not announce is not followed with
// the token, even on the same host name (where net/http itself would
// forward it), and the stranger gets no request at all.
func TestRedirectToAnotherHostKeepsToken(t *testing.T) {
	stranger := leader(t, false)
	f := follower(t, false, func() string { return stranger.URL }, func() []string { return []string{"127.0.0.9:8080"} })
	c := New(f.URL, token)
	err := c.RemoveServer(testCtx(t), "n3")
	if err == nil {
		t.Fatal("a redirect to a host outside the cluster succeeded")
	}
	if stranger.sawToken() || stranger.requests() != 0 {
		t.Fatalf("the other host got %d requests (token sent: %v)", stranger.requests(), stranger.sawToken())
	}
	if !strings.Contains(err.Error(), "refusing") {
		t.Errorf("error %q does not say the redirect was refused", err)
	}
}

// From https, the token never follows a redirect to plain http, not even
// to a node the cluster announces.
func TestRedirectFromHTTPSToHTTPKeepsToken(t *testing.T) {
	l := leader(t, false)
	f := follower(t, true, func() string { return l.URL }, func() []string { return []string{l.hostPort()} })
	c := New(f.URL, token)
	c.HTTP.Transport = f.Client().Transport
	if err := c.RemoveServer(testCtx(t), "n3"); err == nil {
		t.Fatal("a redirect from https to http succeeded")
	}
	if l.requests() != 0 {
		t.Fatalf("the http host got %d requests", l.requests())
	}
}

// A redirect that stays on the configured host keeps the token without
// asking the node for its cluster.
func TestRedirectOnSameHostCarriesToken(t *testing.T) {
	var srv *recorder
	srv = newRecorder(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorised"}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/v1/cluster/servers/n3":
			http.Redirect(w, r, srv.URL+"/api/v1/cluster/servers/n3-moved", http.StatusTemporaryRedirect)
		case "/api/v1/cluster/servers/n3-moved":
			w.Write([]byte(`{}`))
		default:
			http.Error(w, `{"error":"unexpected `+r.URL.Path+`"}`, http.StatusNotFound)
		}
	})
	if err := New(srv.URL, token).RemoveServer(testCtx(t), "n3"); err != nil {
		t.Fatal(err)
	}
	if n := srv.requests(); n != 2 {
		t.Fatalf("%d requests, want 2 (no status lookup)", n)
	}
}

// A restore sent to a follower reaches the leader with its token and the
// whole backup: the body is read again for the second request.
func TestRestoreThroughFollowerResendsBody(t *testing.T) {
	backup := strings.Repeat("tar bytes ", 1000)
	var mu sync.Mutex
	var got string
	l := newRecorder(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorised"}`, http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = string(b)
		mu.Unlock()
		w.Write([]byte(`{"messages":3,"seconds":0.25}`))
	})
	f := follower(t, false, func() string { return l.URL }, func() []string { return []string{l.hostPort()} })
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(backup)), nil }
	rep, err := New(f.URL, token).Restore(testCtx(t), open, int64(len(backup)), true)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != backup || rep.Messages != 3 {
		t.Fatalf("leader got %d of %d bytes; report %+v", len(got), len(backup), rep)
	}
}
