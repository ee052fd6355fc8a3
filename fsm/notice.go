package fsm

import bolt "go.etcd.io/bbolt"

// NoticeAdd queues a delay notice and marks its message's recipients as
// notified in one entry.
//
// Found by the fault campaign (e2e/chaos_test.go, seed 36453333): the
// notice (a SpoolAdd) and the mark (DelayNotified) were two entries. A
// leader that queued the notice and lost leadership before the mark
// committed left the message unmarked; the notice was delivered and
// retired meanwhile, so when the message was deferred again, the next
// leader queued the same notice ID anew and the sender got it twice.
// Committed together, the mark and the notice exist both or neither, and
// a notice for recipients already marked is not queued again.
type NoticeAdd struct {
	Add      SpoolAddSummary `codec:"a"`
	Notified DelayNotified   `codec:"n"`
}

func applyNoticeAdd(tx *bolt.Tx, c *NoticeAdd) error {
	m, err := getMessage(tx, c.Notified.ID)
	if err != nil {
		return err
	}
	if m != nil {
		pending := false
		for _, i := range c.Notified.Recipients {
			if i >= 0 && i < len(m.Recipients) && !m.Recipients[i].DelayNotified {
				pending = true
			}
		}
		if !pending {
			return nil
		}
	}
	if err := applyDelayNotified(tx, &c.Notified); err != nil {
		return err
	}
	return applySpoolAddSummary(tx, &c.Add)
}
