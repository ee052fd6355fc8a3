package node

import (
	"strings"
	"testing"
)

// A postmaster that is not a mailbox is refused before the node starts
// anything.
func TestStartRefusesBadPostmaster(t *testing.T) {
	for _, bad := range []string{"postmaster", "a b@example.net", "pm@[192.0.2.1]", "pm@exämple.net"} {
		_, err := Start(Config{ID: "n1", DataDir: t.TempDir(), Postmaster: bad})
		if err == nil || !strings.Contains(err.Error(), "postmaster") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
