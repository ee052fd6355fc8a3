package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"lifeline/e2e/kit"
)

// startLifeline starts a single-node cluster with its data and log under
// dir and waits until it is healthy.
func startLifeline(ctx context.Context, bin, dir string) (*kit.Node, error) {
	ports, err := kit.FreePorts(4)
	if err != nil {
		return nil, err
	}
	n := &kit.Node{
		ID: "bench1", Bin: bin, DataDir: filepath.Join(dir, "data"), LogPath: filepath.Join(dir, "node.log"),
		SMTP: ports[0], HTTP: ports[1], Raft: ports[2], Gossip: ports[3], Token: kit.RandomHex(24),
		SysProcAttr: kit.Detached(),
	}
	if _, err := n.Launch(); err != nil {
		return nil, err
	}
	if err := n.WaitHealthy(ctx, 60*time.Second); err != nil {
		n.Stop(15 * time.Second)
		return nil, fmt.Errorf("%w%s", err, n.LogTail(30))
	}
	return n, nil
}

// domainInfo is one entry of GET /api/v1/domains.
type domainInfo struct {
	Name        string `json:"name"`
	Destination string `json:"destination"`
	Spooling    bool   `json:"spooling"`
	LastError   string `json:"last_error"`
}

func domains(ctx context.Context, n *kit.Node) ([]domainInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var r struct {
		Domains []domainInfo `json:"domains"`
	}
	return r.Domains, n.API(ctx, http.MethodGet, "/api/v1/domains", nil, &r)
}

// queueEmpty asks for one page of one message: cheap on a large spool,
// unlike the status report, which counts the whole spool.
func queueEmpty(ctx context.Context, n *kit.Node) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var page struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := n.API(ctx, http.MethodGet, "/api/v1/queue?limit=1", nil, &page); err != nil {
		return false, err
	}
	return len(page.Messages) == 0, nil
}

// deadAddr is a loopback port that nothing listens on: a mail server that
// is down, so every accepted message stays queued.
func deadAddr() (string, error) {
	a, err := kit.FreePorts(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}
