package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
	"lifeline/fsm"
)

func typeSet(types ...fsm.CommandType) fsm.TypeSet {
	s := fsm.BaselineTypes()
	for _, t := range types {
		s.Add(t)
	}
	return s
}

func TestCheckUpgraded(t *testing.T) {
	const newType fsm.CommandType = 36
	servers := []string{"n1", "n2", "n3"}
	all := map[string]fsm.TypeSet{"n1": typeSet(newType), "n2": typeSet(newType), "n3": typeSet(newType)}
	cases := []struct {
		name       string
		types      []fsm.CommandType
		advertised map[string]fsm.TypeSet
		// refused names the node the refusal should blame; "" for none.
		refused string
		unseen  bool
	}{
		{"nothing gated", nil, map[string]fsm.TypeSet{}, "", false},
		{"every server knows it", []fsm.CommandType{newType}, all, "", false},
		{"one server runs the older release",
			[]fsm.CommandType{newType},
			map[string]fsm.TypeSet{"n1": typeSet(newType), "n2": typeSet(), "n3": typeSet(newType)}, "n2", false},
		{"one server has no gossip metadata",
			[]fsm.CommandType{newType},
			map[string]fsm.TypeSet{"n1": typeSet(newType), "n2": typeSet(newType)}, "n3", true},
		{"a second type one server lacks",
			[]fsm.CommandType{newType, 37},
			map[string]fsm.TypeSet{"n1": typeSet(newType, 37), "n2": typeSet(newType, 37), "n3": typeSet(newType)}, "n3", false},
		{"a member gossip knows but Raft does not is no vote",
			[]fsm.CommandType{newType},
			map[string]fsm.TypeSet{"n1": typeSet(newType), "n2": typeSet(newType), "n3": typeSet(newType), "n4": typeSet()}, "", false},
	}
	for _, c := range cases {
		err := CheckUpgraded(c.types, servers, c.advertised)
		if c.refused == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var ue *UpgradeRequiredError
		if !errors.As(err, &ue) || ue.Node != c.refused || ue.Unseen != c.unseen {
			t.Errorf("%s: got %v, want a refusal naming %s (unseen %v)", c.name, err, c.refused, c.unseen)
			continue
		}
		if !strings.Contains(err.Error(), "needs every node upgraded") || !strings.Contains(err.Error(), "node "+c.refused) {
			t.Errorf("%s: message %q", c.name, err)
		}
	}
}

func TestUpgradeRefusalCrossesRPC(t *testing.T) {
	in := &UpgradeRequiredError{Type: 36, Node: "mx-2.example", Unseen: true}
	st, msg := statusOf(in)
	var out *UpgradeRequiredError
	if err := errorOf(st, msg); !errors.As(err, &out) || *out != *in {
		t.Fatalf("sent %+v, received %v", in, err)
	}
}

// A three-node cluster: a gated type is refused at the proposer and, when
// the proposer's view lets it through, again at the leader, while
// baseline and ignorable types commit. Nothing refused reaches the log,
// so no node stops on a type it does not know.
func TestGatedTypeRefusedUnlessEveryServerKnowsIt(t *testing.T) {
	nodes := newTestCluster(t, 3)
	waitLeader(t, nodes)
	const gated fsm.CommandType = 0x7f
	if fsm.KnownTypes().Has(gated) || !fsm.Gated(gated) {
		t.Fatalf("type %d is known or not gated: pick another for this test", gated)
	}
	raw := []byte{byte(gated), 0x80}
	applyRaw := func(n *testNode, data []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := n.c.Apply(ctx, data)
		return err
	}
	leader, follower := leaderOf(nodes), followers(nodes)[0]
	// The new leader's first entries commit on their own; wait for them
	// so that any later movement of the index is this test's doing.
	if err := leader.c.raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	before := leader.c.Status().CommitIndex

	// Nobody advertises the type.
	for _, n := range []*testNode{leader, follower} {
		var ue *UpgradeRequiredError
		if err := applyRaw(n, raw); !errors.As(err, &ue) || ue.Type != gated {
			t.Fatalf("%s: gated type gave %v", n.id, err)
		}
	}
	// A command forwarded by a follower that did not check it (a release
	// before the check) is refused by the leader, and the refusal crosses
	// back as a refusal, not as a transport error. Sent straight to the
	// leader's address: should leadership move meanwhile, the node there
	// refuses all the same, as it does not know the type.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := follower.c.pool.call(ctx, leader.addr, opApply, raw, nil, nil)
	cancel()
	if ue := (*UpgradeRequiredError)(nil); !errors.As(err, &ue) || ue.Type != gated {
		t.Fatalf("forwarded gated type gave %v, want the leader's refusal", err)
	}
	if got := leader.c.Status().CommitIndex; got != before {
		t.Fatalf("commit index moved from %d to %d on refused commands", before, got)
	}

	// Baseline and ignorable types are never checked.
	if err := apply(t, follower, &fsm.DomainPut{Name: "a.test", Destination: "127.0.0.1:25", At: 1}); err != nil {
		t.Fatal(err)
	}
	if err := applyRaw(follower, []byte{byte(fsm.IgnorableFlag | gated), 0x80}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		kit.Wait(t, 20*time.Second, 20*time.Millisecond, "the domain on "+n.id, func() (bool, error) { _, ok, _ := n.store.Domain("a.test"); return ok, nil })
	}
}
