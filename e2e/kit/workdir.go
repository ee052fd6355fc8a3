package kit

import (
	"encoding/json"
	"io"
	"os"
	"syscall"
)

// DefaultWorkdir is where a measurement keeps its queues: /var/tmp,
// because Debian may mount /tmp as tmpfs, where fsync costs nothing and
// the figures would flatter every system.
func DefaultWorkdir() string {
	if fi, err := os.Stat("/var/tmp"); err == nil && fi.IsDir() {
		return "/var/tmp"
	}
	return os.TempDir()
}

// OnTmpfs reports whether path is on tmpfs.
func OnTmpfs(path string) bool {
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	return syscall.Statfs(path, &st) == nil && st.Type == tmpfsMagic
}

// PrintJSON writes a report as indented JSON, with <, > and & as they are.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
