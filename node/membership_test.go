package node

import (
	"reflect"
	"testing"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/gossip"
)

func member(name, raft string, st gossip.State) gossip.Member {
	return gossip.Member{Name: name, State: st, Meta: gossip.Meta{RaftAddr: raft}}
}

// The leader's reconcile, round by round on a fake clock against a
// scripted gossip view: joins, a moved address, a graceful leave, a
// failure that heals within the grace period and one that does not, and
// an operator's removal that gossip has not caught up with.
func TestPlanReconcile(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	deadSince := map[string]time.Time{}
	removed := map[string]bool{}
	round := func(now time.Time, servers map[string]string, members ...gossip.Member) reconcilePlan {
		return planReconcile(reconcileInput{
			self: "n1", servers: servers, members: members, deadSince: deadSince,
			recentlyRemoved: func(id string) bool { return removed[id] }, now: now, removeFailedAfter: time.Hour,
		})
	}
	alive := gossip.StateAlive

	// Two new members are added; the leader itself is never touched.
	p := round(t0, map[string]string{"n1": "10.0.0.1:7000"},
		member("n1", "10.0.0.1:7000", alive), member("n3", "10.0.0.3:7000", alive), member("n2", "10.0.0.2:7000", alive))
	want := []cluster.Peer{{ID: "n2", Address: "10.0.0.2:7000"}, {ID: "n3", Address: "10.0.0.3:7000"}}
	if !reflect.DeepEqual(p.add, want) || len(p.remove) != 0 {
		t.Fatalf("joins: %+v", p)
	}
	full := map[string]string{"n1": "10.0.0.1:7000", "n2": "10.0.0.2:7000", "n3": "10.0.0.3:7000"}

	// n3 comes back with another Raft address: re-added there. A member
	// without a Raft address yet is left alone.
	p = round(t0, full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive),
		member("n3", "10.0.0.33:7000", alive), member("n4", "", alive))
	if len(p.add) != 1 || p.add[0] != (cluster.Peer{ID: "n3", Address: "10.0.0.33:7000"}) || len(p.remove) != 0 {
		t.Fatalf("moved address: %+v", p)
	}

	// n3 fails: kept through the grace period, and a return within it
	// clears the count.
	p = round(t0, full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive), member("n3", "10.0.0.3:7000", gossip.StateDead))
	if len(p.remove) != 0 || !deadSince["n3"].Equal(t0) {
		t.Fatalf("failure, at once: %+v, dead since %v", p, deadSince["n3"])
	}
	p = round(t0.Add(59*time.Minute), full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive), member("n3", "10.0.0.3:7000", gossip.StateDead))
	if len(p.remove) != 0 {
		t.Fatalf("failure within the grace period: %+v", p)
	}
	p = round(t0.Add(60*time.Minute), full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive), member("n3", "10.0.0.3:7000", alive))
	if len(p.remove) != 0 || len(p.add) != 0 {
		t.Fatalf("back within the grace period: %+v", p)
	}
	if _, ok := deadSince["n3"]; ok {
		t.Fatal("a node that came back still counts as dead")
	}

	// Failed again, and for good; also a server gossip never heard of.
	t1 := t0.Add(2 * time.Hour)
	p = round(t1, full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive), member("n3", "10.0.0.3:7000", gossip.StateDead))
	if len(p.remove) != 0 {
		t.Fatalf("grace period restarted: %+v", p)
	}
	p = round(t1.Add(time.Hour), full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive))
	if !reflect.DeepEqual(p.remove, []removal{{id: "n3"}}) {
		t.Fatalf("failed past the grace period: %+v", p)
	}

	// n2 leaves gracefully: removed at once.
	p = round(t1, full, member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", gossip.StateLeft), member("n3", "10.0.0.3:7000", alive))
	if !reflect.DeepEqual(p.remove, []removal{{id: "n2", left: true}}) {
		t.Fatalf("leave: %+v", p)
	}

	// The operator removed n2; gossip still says alive: not re-added.
	removed["n2"] = true
	p = round(t1, map[string]string{"n1": "10.0.0.1:7000", "n3": "10.0.0.3:7000"},
		member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive), member("n3", "10.0.0.3:7000", alive))
	if len(p.add) != 0 {
		t.Fatalf("operator's removal undone: %+v", p)
	}

	// With removeFailedAfter 0 a failed server is never removed.
	p = planReconcile(reconcileInput{self: "n1", servers: full, deadSince: map[string]time.Time{"n3": t0},
		members: []gossip.Member{member("n1", "10.0.0.1:7000", alive), member("n2", "10.0.0.2:7000", alive)}, now: t0.Add(1000 * time.Hour)})
	if len(p.remove) != 0 {
		t.Fatalf("removed with the grace period off: %+v", p)
	}
}
