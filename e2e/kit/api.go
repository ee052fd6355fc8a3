package kit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Healthz is the body of GET /healthz, which needs no token.
type Healthz struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	Status       string `json:"status"`
	Error        string `json:"error"`
}

// Status is the body of GET /api/v1/status and of `lifeline status
// --json`: the cluster as one node sees it.
type Status struct {
	Cluster struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		LeaderID     string `json:"leader_id"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		Servers      []struct {
			ID       string `json:"id"`
			Address  string `json:"address"`
			Suffrage string `json:"suffrage"`
			Leader   bool   `json:"leader"`
		} `json:"servers"`
	} `json:"cluster"`
	Queue struct {
		Messages int              `json:"messages"`
		Bytes    int64            `json:"bytes"`
		ByDomain map[string]int64 `json:"by_domain"`
	} `json:"queue"`
	Healthy bool              `json:"healthy"`
	Problem string            `json:"problem"`
	Members []json.RawMessage `json:"members"`
	BlobLag int64             `json:"blob_lag"`
}

// Suffrage is how the node sees server id: "voter", "nonvoter", or "" for
// a server it does not list.
func (s Status) Suffrage(id string) string {
	for _, sv := range s.Cluster.Servers {
		if sv.ID == id {
			return sv.Suffrage
		}
	}
	return ""
}

// Voters counts the voters the node sees.
func (s Status) Voters() int {
	v := 0
	for _, sv := range s.Cluster.Servers {
		if sv.Suffrage == "voter" {
			v++
		}
	}
	return v
}

// APIError is an answer of the JSON API other than 2xx.
type APIError struct {
	Code int
	Text string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Text) }

func (n *Node) httpClient() *http.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client == nil {
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		if n.DialContext != nil {
			// A connection made inside a namespace is not worth keeping
			// for a node that may be cut off the next moment.
			tr.DialContext, tr.DisableKeepAlives = n.DialContext, true
		}
		n.client = &http.Client{Transport: tr}
	}
	return n.client
}

// Health asks /healthz once; code is the HTTP status, 0 without an answer.
// It gives up after 5 s.
func (n *Node) Health(ctx context.Context) (int, Healthz, error) {
	var h Healthz
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTP+"/healthz", nil)
	resp, err := n.httpClient().Do(req)
	if err != nil {
		return 0, h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h)
	return resp.StatusCode, h, err
}

// API calls the JSON API with the operator token, straight over HTTP (a
// poll every 100 ms must not cost a process start each time), and decodes
// a 2xx answer into out unless out is nil. Only ctx bounds the call.
func (n *Node) API(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.HTTP+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.Token)
	resp, err := n.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{resp.StatusCode, strings.TrimSpace(string(b))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// APIStatus is GET /api/v1/status; it gives up after 10 s.
func (n *Node) APIStatus(ctx context.Context) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st Status
	return st, n.API(ctx, http.MethodGet, "/api/v1/status", nil, &st)
}

// CLIStatus is `lifeline status --json`, as an operator asks.
func (n *Node) CLIStatus(ctx context.Context) (Status, error) {
	var st Status
	out, err := n.CLI(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// Metric reads one series from the node's /metrics, named as Prometheus
// prints it: `lifeline_delivery_outcomes_total{outcome="deferred"}`. A
// series the node has not exported yet (a counter never incremented)
// reads as 0.
func (n *Node) Metric(ctx context.Context, series string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTP+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+n.Token)
	resp, err := n.httpClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, &APIError{resp.StatusCode, strings.TrimSpace(string(b))}
	}
	return MetricValue(string(b), series), nil
}

// MetricValue finds series in a Prometheus text exposition; 0 when absent.
func MetricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return 0
}
