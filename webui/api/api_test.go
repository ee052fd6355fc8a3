package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"lifeline/webui/api"
	"lifeline/webui/apiclient"
	"lifeline/webui/webtest"
)

const token = webtest.Token

func TestAPIRequiresTheOperatorToken(t *testing.T) {
	_, base := webtest.StartNode(t)
	for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
		for _, ep := range []string{"/api/v1/status", "/api/v1/domains", "/api/v1/queue", "/metrics"} {
			if code, _ := webtest.Do(t, "GET", base+ep, tok, ""); code != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d, want 401", ep, tok, code)
			}
		}
		if code, _ := webtest.Do(t, "POST", base+"/api/v1/domains", tok, `{"name":"x.test","destination":"127.0.0.1:25"}`); code != http.StatusUnauthorized {
			t.Errorf("POST with token %q: %d", tok, code)
		}
	}
	if code, _ := webtest.Do(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
}

func TestDomainValidationChangesNothing(t *testing.T) {
	n, base := webtest.StartNode(t)
	bad := []string{
		`{"name":"not a domain","destination":"127.0.0.1:25"}`,
		`{"name":"localhost","destination":"127.0.0.1:25"}`,
		`{"name":"a..b.test","destination":"127.0.0.1:25"}`,
		`{"name":"-a.test","destination":"127.0.0.1:25"}`,
		`{"name":"<script>.test","destination":"127.0.0.1:25"}`,
		`{"name":"ok.test","destination":"127.0.0.1"}`,
		`{"name":"ok.test","destination":"127.0.0.1:0"}`,
		`{"name":"ok.test","destination":"127.0.0.1:70000"}`,
		`{"name":"ok.test","destination":"user@host:25"}`,
		`{"name":"ok.test","destination":"127.0.0.1:25","extra":1}`,
		`{"name":"ok.test","destination":"127.0.0.1:25"`,
		`[]`,
		`{"name":"` + strings.Repeat("a", 300) + `.test","destination":"127.0.0.1:25"}`,
	}
	for _, b := range bad {
		code, body := webtest.Do(t, "POST", base+"/api/v1/domains", token, b)
		if code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s: %d %s, want 400 with an error", b, code, body)
		}
	}
	big := `{"name":"ok.test","destination":"127.0.0.1:25","org":"` + strings.Repeat("x", 2<<20) + `"}`
	if code, _ := webtest.Do(t, "POST", base+"/api/v1/domains", token, big); code != http.StatusBadRequest {
		t.Errorf("2 MiB body: %d, want 400", code)
	}
	if ds, _ := n.Store().Domains(); len(ds) != 0 {
		t.Fatalf("refused requests changed the state: %+v", ds)
	}

	c := apiclient.New(base, token)
	ctx := context.Background()
	if _, err := c.AddDomain(ctx, api.DomainRequest{Name: "Example.TEST.", Destination: "127.0.0.1:2525"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddDomain(ctx, api.DomainRequest{Name: "example.test", Destination: "127.0.0.1:2525"}); err == nil || err.(*apiclient.Error).Status != http.StatusConflict {
		t.Fatalf("adding a domain twice: %v", err)
	}
	if _, err := c.SetDomain(ctx, api.DomainRequest{Name: "missing.test", Destination: "127.0.0.1:1"}); err == nil || err.(*apiclient.Error).Status != http.StatusNotFound {
		t.Fatalf("setting an unknown domain: %v", err)
	}
	d, err := c.SetDomain(ctx, api.DomainRequest{Name: "example.test", Destination: "127.0.0.1:2626"})
	if err != nil || d.Destination != "127.0.0.1:2626" || d.Name != "example.test" {
		t.Fatalf("set: %+v %v", d, err)
	}
	if err := c.RemoveDomain(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDomain(ctx, "example.test"); err == nil {
		t.Fatal("removing a removed domain succeeded")
	}
}

func TestQueueOpsOnUnknownIDs(t *testing.T) {
	_, base := webtest.StartNode(t)
	for _, ep := range []string{"/api/v1/queue/NOPE/hold", "/api/v1/queue/NOPE/release", "/api/v1/queue/NOPE/retry"} {
		if code, _ := webtest.Do(t, "POST", base+ep, token, ""); code != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", ep, code)
		}
	}
	if code, _ := webtest.Do(t, "DELETE", base+"/api/v1/queue/NOPE", token, ""); code != http.StatusNotFound {
		t.Errorf("DELETE unknown message: %d", code)
	}
	if code, _ := webtest.Do(t, "GET", base+"/api/v1/queue?limit=0", token, ""); code != http.StatusBadRequest {
		t.Errorf("limit=0: %d", code)
	}
	if code, _ := webtest.Do(t, "POST", base+"/api/v1/queue/flush", token, ""); code != http.StatusOK {
		t.Errorf("flush of an empty queue: %d", code)
	}
}

func TestMetricsAndStatusJSON(t *testing.T) {
	_, base := webtest.StartNode(t)
	code, body := webtest.Do(t, "GET", base+"/metrics", token, "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, m := range []string{"lifeline_raft_state{state=\"Leader\"} 1", "lifeline_raft_commit_seconds_bucket", "lifeline_queue_messages_total 0", "lifeline_raft_voters 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	code, body = webtest.Do(t, "GET", base+"/api/v1/status", token, "")
	var st api.StatusReport
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || !st.Healthy || st.Cluster.State != "Leader" {
		t.Fatalf("status: %d %s", code, body)
	}
}
