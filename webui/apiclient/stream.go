package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// stream sends a request whose answer (or body) may take longer than the
// client's timeout, such as a backup: only ctx bounds it. body, when not
// nil, is called again if a follower redirects the request to its leader.
// A non-2xx answer is returned as an *Error; otherwise the caller closes
// the answer's body.
func (c *Client) stream(ctx context.Context, method, path, contentType string, body func() (io.ReadCloser, error), size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	if body != nil {
		if req.Body, err = body(); err != nil {
			return nil, err
		}
		req.GetBody, req.ContentLength = body, size
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := *c.HTTP
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}
