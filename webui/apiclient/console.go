package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"lifeline/fsm"
	"lifeline/webui/api"
)

// TestDomain tests a domain's destinations from the node (all of them,
// or only dest when set).
func (c *Client) TestDomain(ctx context.Context, name, dest string) (*api.DomainTestReport, error) {
	var r api.DomainTestReport
	path := "/api/v1/domains/" + url.PathEscape(name) + "/test"
	if dest != "" {
		path += "?destination=" + url.QueryEscape(dest)
	}
	return &r, c.do(ctx, http.MethodPost, path, nil, &r)
}

// DomainRequests lists domains waiting for the operator's approval.
func (c *Client) DomainRequests(ctx context.Context) ([]fsm.DomainRequestRecord, error) {
	var r struct {
		Requests []fsm.DomainRequestRecord `json:"requests"`
	}
	return r.Requests, c.do(ctx, http.MethodGet, "/api/v1/domain-requests", nil, &r)
}

// DecideDomain approves or refuses a requested domain.
func (c *Client) DecideDomain(ctx context.Context, name string, approve bool) error {
	if approve {
		return c.do(ctx, http.MethodPost, "/api/v1/domain-requests/"+url.PathEscape(name)+"/approve", nil, nil)
	}
	return c.do(ctx, http.MethodDelete, "/api/v1/domain-requests/"+url.PathEscape(name), nil, nil)
}

// Alerts returns an organisation's alert settings.
func (c *Client) Alerts(ctx context.Context, org string) (*api.AlertsView, error) {
	var r api.AlertsView
	return &r, c.do(ctx, http.MethodGet, "/api/v1/orgs/"+url.PathEscape(org)+"/alerts", nil, &r)
}

// SetAlerts replaces an organisation's alert settings.
func (c *Client) SetAlerts(ctx context.Context, org string, a api.AlertsView) (*api.AlertsView, error) {
	var r api.AlertsView
	return &r, c.do(ctx, http.MethodPut, "/api/v1/orgs/"+url.PathEscape(org)+"/alerts", a, &r)
}

// Gateway returns the SMS gateway (without its password).
func (c *Client) Gateway(ctx context.Context) (map[string]any, error) {
	var r map[string]any
	return r, c.do(ctx, http.MethodGet, "/api/v1/alerts/gateway", nil, &r)
}

// SetGateway replaces the SMS gateway; an empty URL removes it.
func (c *Client) SetGateway(ctx context.Context, g api.GatewayRequest) (map[string]any, error) {
	var r map[string]any
	return r, c.do(ctx, http.MethodPut, "/api/v1/alerts/gateway", g, &r)
}

// ImportUsers imports a CSV file into org. On a bad file nothing is
// imported and the report lists the problems (with an *Error).
func (c *Client) ImportUsers(ctx context.Context, org string, csv io.Reader, welcome bool) (*api.ImportReport, error) {
	q := url.Values{"org": {org}}
	if welcome {
		q.Set("welcome", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/users/import?"+q.Encode(), csv)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	var r api.ImportReport
	json.Unmarshal(data, &r)
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
			if len(r.Problems) > 0 {
				e.Error = "nothing was imported: the file has problems"
			}
		}
		return &r, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return &r, nil
}

// SendWelcome queues welcome (or, with reset, password reset) emails.
func (c *Client) SendWelcome(ctx context.Context, emails []string, reset bool) (int, error) {
	var r struct {
		Sent int `json:"sent"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/users/welcome", api.WelcomeRequest{Emails: emails, Reset: reset}, &r)
	return r.Sent, err
}

// DeleteUser removes a login.
func (c *Client) DeleteUser(ctx context.Context, email string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(email), nil, nil)
}

// AuditVerification is the answer of GET /api/v1/audit/verify.
type AuditVerification struct {
	Node         string         `json:"node"`
	AppliedIndex uint64         `json:"applied_index"`
	Check        fsm.AuditCheck `json:"check"`
}

// VerifyAudit has the node recompute its audit chain.
func (c *Client) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var r AuditVerification
	return &r, c.do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &r)
}
