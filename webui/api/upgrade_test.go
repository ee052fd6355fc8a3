package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"lifeline/cluster"
	"lifeline/node"
	"lifeline/webui"
	"lifeline/webui/webtest"
)

// notUpgraded is a node in a cluster part way through a rolling upgrade:
// every write it is asked for needs a command type one node lacks.
type notUpgraded struct{ *node.Node }

func (notUpgraded) Apply(context.Context, any) error {
	return &cluster.UpgradeRequiredError{Type: 36, Node: "n3"}
}

func (u notUpgraded) ApplyVisible(ctx context.Context, cmd any) error { return u.Apply(ctx, cmd) }

func TestUpgradeRefusalIsAConflict(t *testing.T) {
	n, _ := webtest.StartNode(t)
	srv := httptest.NewServer(webui.New(notUpgraded{n}, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	code, body := webtest.Do(t, "POST", srv.URL+"/api/v1/domains", webtest.Token, `{"name":"x.test","destination":"127.0.0.1:25"}`)
	if code != http.StatusConflict || !strings.Contains(body, "needs every node upgraded; node n3 does not know it") {
		t.Fatalf("%d %s", code, body)
	}
}
