package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"lifeline/fsm"
	"lifeline/webui/api"
)

// Orgs lists organisations.
func (c *Client) Orgs(ctx context.Context) ([]fsm.Org, error) {
	var r struct {
		Orgs []fsm.Org `json:"orgs"`
	}
	return r.Orgs, c.do(ctx, http.MethodGet, "/api/v1/orgs", nil, &r)
}

// AddOrg creates an organisation.
func (c *Client) AddOrg(ctx context.Context, req api.OrgRequest) (*fsm.Org, error) {
	var r fsm.Org
	return &r, c.do(ctx, http.MethodPost, "/api/v1/orgs", req, &r)
}

// SetOrg changes an organisation's settings.
func (c *Client) SetOrg(ctx context.Context, req api.OrgRequest) (*fsm.Org, error) {
	var r fsm.Org
	return &r, c.do(ctx, http.MethodPut, "/api/v1/orgs/"+url.PathEscape(req.Name), req, &r)
}

// Users lists the logins of org ("" for all) with role ("" for any).
func (c *Client) Users(ctx context.Context, org, role string) ([]api.UserView, error) {
	q := url.Values{}
	if org != "" {
		q.Set("org", org)
	}
	if role != "" {
		q.Set("role", role)
	}
	var r struct {
		Users []api.UserView `json:"users"`
	}
	return r.Users, c.do(ctx, http.MethodGet, "/api/v1/users?"+q.Encode(), nil, &r)
}

// AddUser creates a user, org admin or partner.
func (c *Client) AddUser(ctx context.Context, req api.UserRequest) (*api.UserView, error) {
	var r api.UserView
	return &r, c.do(ctx, http.MethodPost, "/api/v1/users", req, &r)
}

// SetUser changes a login.
func (c *Client) SetUser(ctx context.Context, email string, p api.UserPatch) (*api.UserView, error) {
	var r api.UserView
	return &r, c.do(ctx, http.MethodPatch, "/api/v1/users/"+url.PathEscape(email), p, &r)
}

// Audit returns the newest audit entries, of one org if org is set.
func (c *Client) Audit(ctx context.Context, org string, limit int) ([]fsm.AuditEntry, error) {
	q := url.Values{}
	if org != "" {
		q.Set("org", org)
	}
	if limit > 0 {
		q.Set("limit", itoa(limit))
	}
	var r struct {
		Entries []fsm.AuditEntry `json:"entries"`
	}
	return r.Entries, c.do(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, &r)
}

func itoa(n int) string { return strconv.Itoa(n) }
