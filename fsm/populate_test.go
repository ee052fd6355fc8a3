package fsm

import (
	"fmt"
	"strings"

	"github.com/hashicorp/raft"
)

// PopulateInbox spools n messages for addr straight into the state, in
// batches as Raft would apply them, for benchmarks of a large inbox. The
// messages arrive one millisecond apart from start (unix nanoseconds) and
// reference blobs that do not exist.
func PopulateInbox(f *FSM, addr string, n int, start int64) error {
	const batch = 1000
	idx := f.AppliedIndex()
	for i := 0; i < n; i += batch {
		var logs []*raft.Log
		for j := i; j < n && j < i+batch; j++ {
			at := start + int64(j)*1e6
			domain := addr[strings.IndexByte(addr, '@')+1:]
			c := &SpoolAddSummary{
				Add: SpoolAdd{ID: fmt.Sprintf("BENCH%012d", j), From: "sender@example.net", BlobHash: fmt.Sprintf("bench-%d", j),
					Size: 4096, ReceivedAt: at, Recipients: []Recipient{{Address: addr, Domain: domain}}},
				Summary: InboxSummary{From: fmt.Sprintf("Sender %d <sender%d@example.net>", j%97, j%97), Subject: fmt.Sprintf("Message number %d", j), Attachment: j%10 == 0},
			}
			data, err := Encode(c)
			if err != nil {
				return err
			}
			idx++
			logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})
		}
		for _, r := range f.ApplyBatch(logs) {
			if r != nil {
				return r.(error)
			}
		}
	}
	return nil
}
