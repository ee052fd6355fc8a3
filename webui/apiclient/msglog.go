package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"

	"lifeline/webui/api"
)

// LogFilter narrows a message log search. Fields left empty do not filter;
// each is sent as given, for the node to judge.
type LogFilter struct {
	ID, Sender, Recipient, Status string
	// Since and Until are RFC 3339 times or durations back from now (2h).
	Since, Until string
	// Limit is how many entries, 1 to 1000 (the node's default is 100).
	Limit string
}

func (f LogFilter) query() string {
	q := url.Values{}
	for k, v := range map[string]string{"id": f.ID, "sender": f.Sender, "recipient": f.Recipient, "status": f.Status,
		"since": f.Since, "until": f.Until, "limit": f.Limit} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// SearchLog returns the newest entries of every node's message log that
// match f. A search across the cluster may outlast the client's timeout;
// ctx bounds it.
func (c *Client) SearchLog(ctx context.Context, f LogFilter) (*api.LogPage, error) {
	resp, err := c.stream(ctx, http.MethodGet, "/api/v1/log?"+f.query(), "", nil, 0)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page api.LogPage
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, err
	}
	return &page, nil
}

// ExportLog streams every entry that matches f as CSV; the caller closes
// it.
func (c *Client) ExportLog(ctx context.Context, f LogFilter) (io.ReadCloser, error) {
	resp, err := c.stream(ctx, http.MethodGet, "/api/v1/log.csv?"+f.query(), "", nil, 0)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
