package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"lifeline/node/backup"
)

// Backup streams a backup of the cluster from the node: a tar archive
// whose first entry is the manifest. It takes as long as the bodies take
// to arrive, so only ctx bounds it; the caller closes it.
func (c *Client) Backup(ctx context.Context) (io.ReadCloser, error) {
	resp, err := c.stream(ctx, http.MethodGet, "/api/v1/snapshot", "", nil, 0)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Restore replaces the whole cluster's state with a backup of size bytes
// that open reads; open is called again when a follower redirects the
// restore to its leader. force replaces a state that already holds mail
// or domains.
func (c *Client) Restore(ctx context.Context, open func() (io.ReadCloser, error), size int64, force bool) (*backup.RestoreReport, error) {
	path := "/api/v1/snapshot/restore"
	if force {
		path += "?force=1"
	}
	resp, err := c.stream(ctx, http.MethodPost, path, "application/x-tar", open, size)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rep backup.RestoreReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
