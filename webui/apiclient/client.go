// Package apiclient is the Go client of Lifeline's JSON API, used by the
// `lifeline admin` and `lifeline status` commands and by tests.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/webui/api"
)

// Client talks to one node's API.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a client for the node at base (e.g. http://127.0.0.1:8080).
func New(base, token string) *Client {
	c := &Client{BaseURL: strings.TrimSuffix(base, "/"), Token: token}
	c.HTTP = &http.Client{Timeout: 30 * time.Second, CheckRedirect: c.checkRedirect}
	return c
}

// Error is a non-2xx answer from the API.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Status returns the node's view of the cluster and the queue.
func (c *Client) Status(ctx context.Context) (*api.StatusReport, error) {
	var r api.StatusReport
	return &r, c.do(ctx, http.MethodGet, "/api/v1/status", nil, &r)
}

// Domains lists protected domains.
func (c *Client) Domains(ctx context.Context) ([]fsm.Domain, error) {
	var r struct {
		Domains []fsm.Domain `json:"domains"`
	}
	return r.Domains, c.do(ctx, http.MethodGet, "/api/v1/domains", nil, &r)
}

// AddDomain protects a new domain.
func (c *Client) AddDomain(ctx context.Context, d api.DomainRequest) (*fsm.Domain, error) {
	var r fsm.Domain
	return &r, c.do(ctx, http.MethodPost, "/api/v1/domains", d, &r)
}

// SetDomain changes a domain's destination or organisation.
func (c *Client) SetDomain(ctx context.Context, d api.DomainRequest) (*fsm.Domain, error) {
	var r fsm.Domain
	return &r, c.do(ctx, http.MethodPut, "/api/v1/domains/"+url.PathEscape(d.Name), d, &r)
}

// RemoveDomain stops protecting a domain.
func (c *Client) RemoveDomain(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/domains/"+url.PathEscape(name), nil, nil)
}

// QueueFilter narrows a queue listing.
type QueueFilter struct {
	Domain, Sender, Recipient string
	// State is held, deferred or new.
	State string
	// OlderThan and NewerThan are durations such as 4h.
	OlderThan, NewerThan string
}

// Queue lists every queued message matching f, following the pages.
func (c *Client) Queue(ctx context.Context, f QueueFilter) ([]api.QueueMessage, error) {
	var all []api.QueueMessage
	after := ""
	for {
		q := url.Values{}
		q.Set("limit", "1000")
		if f.Domain != "" {
			q.Set("domain", f.Domain)
		}
		if f.Sender != "" {
			q.Set("sender", f.Sender)
		}
		if f.Recipient != "" {
			q.Set("recipient", f.Recipient)
		}
		if after != "" {
			q.Set("after", after)
		}
		for k, v := range map[string]string{"state": f.State, "older_than": f.OlderThan, "newer_than": f.NewerThan} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var page struct {
			Messages []api.QueueMessage `json:"messages"`
			Next     string             `json:"next"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/queue?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if page.Next == "" {
			return all, nil
		}
		after = page.Next
	}
}

// Message shows one queued message.
func (c *Client) Message(ctx context.Context, id string) (*api.QueueMessage, error) {
	var r api.QueueMessage
	return &r, c.do(ctx, http.MethodGet, "/api/v1/queue/"+url.PathEscape(id), nil, &r)
}

// QueueOp runs hold, release, retry or delete on one message; flush is
// retry with no ID. bounce deletes with a failure notice to the sender.
func (c *Client) QueueOp(ctx context.Context, op, id string, bounce bool) error {
	switch {
	case op == "flush":
		return c.do(ctx, http.MethodPost, "/api/v1/queue/flush", nil, nil)
	case op == "delete":
		q := ""
		if bounce {
			q = "?dsn=true"
		}
		return c.do(ctx, http.MethodDelete, "/api/v1/queue/"+url.PathEscape(id)+q, nil, nil)
	}
	return c.do(ctx, http.MethodPost, "/api/v1/queue/"+url.PathEscape(id)+"/"+op, nil, nil)
}

// TransferLeadership asks the leader to hand over, to the node named to or,
// with to empty, to the most up-to-date follower.
func (c *Client) TransferLeadership(ctx context.Context, to string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/cluster/transfer-leadership", map[string]string{"to": to}, nil)
}

// RemoveServer takes a node out of the cluster's voters.
func (c *Client) RemoveServer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/cluster/servers/"+url.PathEscape(id), nil, nil)
}

// Snapshot makes the node write a Raft snapshot now; it returns the seconds
// it took.
func (c *Client) Snapshot(ctx context.Context) (float64, error) {
	var r struct {
		Seconds float64 `json:"seconds"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/cluster/snapshot", nil, &r)
	return r.Seconds, err
}
