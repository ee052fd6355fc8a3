package node

import (
	"testing"

	"lifeline/cluster/gossip"
	"lifeline/fsm"
)

func TestAdvertisedTypesOfAMember(t *testing.T) {
	next := fsm.KnownTypes()
	next.Add(0x7f)
	cases := []struct {
		name string
		meta gossip.Meta
		want fsm.TypeSet
	}{
		{"a node of this or a later release", gossip.Meta{Types: string(next[:])}, next},
		// A release before the field existed knows the baseline.
		{"no field", gossip.Meta{RaftAddr: "10.0.0.2:7000"}, fsm.BaselineTypes()},
		{"unreadable field", gossip.Meta{Types: "\x01\x02"}, fsm.BaselineTypes()},
	}
	for _, c := range cases {
		if got := typesOf(c.meta); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got.Types(), c.want.Types())
		}
	}
}

func TestNodeAdvertisesItsTypes(t *testing.T) {
	n := startTestNode(t)
	m := n.meta()
	got, ok := fsm.ParseTypeSet([]byte(m.Types))
	if !ok || got != fsm.KnownTypes() {
		t.Fatalf("meta advertises %q", m.Types)
	}
	// Without gossip nobody else is known; the node itself is the
	// cluster's business, not gossip's.
	if adv := n.advertisedTypes(); len(adv) != 0 {
		t.Errorf("advertisedTypes without gossip: %v", adv)
	}
}
