package delivery

import (
	"context"
	"time"

	"lifeline/fsm"
)

// RetryInChunks makes every queued message that matches f due at `at`, a
// few hundred messages per command. One command for a whole spool of a
// hundred thousand messages would rewrite them all in one transaction on
// every node, and the memory that takes grows with the spool.
func RetryInChunks(ctx context.Context, store *fsm.Store, apply func(context.Context, any) error, f fsm.MessageFilter, at time.Time) (int, error) {
	after := ""
	total := 0
	for {
		msgs, next, err := store.Messages(f, after, 500)
		if err != nil {
			return total, err
		}
		if len(msgs) == 0 {
			return total, nil
		}
		ids := make([]string, 0, len(msgs))
		for _, m := range msgs {
			if !m.Held {
				ids = append(ids, m.ID)
			}
		}
		if len(ids) > 0 {
			if err := apply(ctx, &fsm.QueueOp{Op: fsm.OpRetry, IDs: ids, Domain: f.Domain, At: at.UnixNano(), Lenient: true}); err != nil {
				return total, err
			}
			total += len(ids)
		}
		if next == "" {
			return total, nil
		}
		after = next
	}
}
