package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"lifeline/e2e/kit"
)

// api calls the JSON API of n, bounded by timeout.
func api(ctx context.Context, n *kit.Node, timeout time.Duration, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.API(ctx, method, path, nil, out)
}

// admin runs `lifeline admin ARGS...` against n, as an operator would, and
// returns all it printed, stderr included.
func admin(ctx context.Context, n *kit.Node, args ...string) (string, error) {
	out, err := n.CLI(ctx, append([]string{"admin"}, args...)...)
	var ce *kit.CLIError
	if errors.As(err, &ce) {
		out += ce.Stderr
	}
	return strings.TrimSpace(out), err
}

// queuedBlob is one spooled message and the hash of its body.
type queuedBlob struct {
	ID         string `json:"id"`
	Blob       string `json:"blob"`
	Recipients []struct {
		Attempts int `json:"attempts"`
	} `json:"recipients"`
}

// queue lists the whole spool page by page.
func queue(ctx context.Context, n *kit.Node) ([]queuedBlob, error) {
	var all []queuedBlob
	after := ""
	for {
		var page struct {
			Messages []queuedBlob `json:"messages"`
			Next     string       `json:"next"`
		}
		path := "/api/v1/queue?limit=1000"
		if after != "" {
			path += "&after=" + after
		}
		if err := api(ctx, n, time.Minute, http.MethodGet, path, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if page.Next == "" || len(page.Messages) == 0 {
			return all, nil
		}
		after = page.Next
	}
}

// attemptStats summarises the delivery attempts of a sample of the spool:
// with the destination down and the domain spooling, the leader should
// probe one message per interval, not retry them all.
type attemptStats struct {
	Sampled    int     `json:"sampled_messages"`
	Tried      int     `json:"messages_tried"` // at least one attempt
	Mean       float64 `json:"mean_attempts"`
	Max        int     `json:"max_attempts"`
	AllSpooled int     `json:"spool_messages"`
}

func sampleAttempts(q []queuedBlob, limit int) attemptStats {
	st := attemptStats{AllSpooled: len(q)}
	total := 0
	for i, m := range q {
		if i >= limit {
			break
		}
		st.Sampled++
		a := 0
		for _, r := range m.Recipients {
			a += r.Attempts
		}
		if a > 0 {
			st.Tried++
		}
		total += a
		st.Max = max(st.Max, a)
	}
	if st.Sampled > 0 {
		st.Mean = float64(total) / float64(st.Sampled)
	}
	return st
}
