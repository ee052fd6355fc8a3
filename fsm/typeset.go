package fsm

import "slices"

// TypeSet is a set of command types: bit t%8 of byte t/8 stands for type t.
// Its 32-byte form travels in gossip metadata, so that a node can tell which
// command types every other node's build can apply before it proposes one
// (rolling upgrades, docs/design.md §3.3).
type TypeSet [32]byte

// Has reports whether t is in the set.
func (s TypeSet) Has(t CommandType) bool { return s[t/8]&(1<<(t%8)) != 0 }

// Add puts t in the set.
func (s *TypeSet) Add(t CommandType) { s[t/8] |= 1 << (t % 8) }

// Types lists the set in ascending order.
func (s TypeSet) Types() []CommandType {
	var out []CommandType
	for i := range 256 {
		if s.Has(CommandType(i)) {
			out = append(out, CommandType(i))
		}
	}
	return out
}

// ParseTypeSet reads the 32-byte form of a set. Anything else is refused
// rather than guessed at: a node whose set cannot be read must count as
// knowing nothing beyond the baseline.
func ParseTypeSet(b []byte) (TypeSet, bool) {
	var s TypeSet
	if len(b) != len(s) {
		return s, false
	}
	copy(s[:], b)
	return s, true
}

// KnownTypes reports the command types this build can apply: those with a
// row in the registry, which is also what Decode and Apply consult.
func KnownTypes() TypeSet {
	var s TypeSet
	for i := range commands {
		if commands[i].known() {
			s.Add(CommandType(i))
		}
	}
	return s
}

// InBaseline reports whether t is one of the command types that every
// release able to join a Lifeline cluster applies: the non-ignorable types
// of the first release that advertised its types in gossip. A node of a
// release before that advertises nothing and is taken to know exactly
// these.
//
// The list is frozen. It is written as numbers rather than as the Type
// constants, and it is not derived from the registry, so that adding a
// row there cannot widen it by accident. A new non-ignorable type stays
// outside it forever: the cluster proposes it only once every server
// advertises it (cluster.CheckUpgraded), because an older node stops
// (panics) on a type it does not know rather than diverge (docs/design.md §3.2,
// §3.3). Types are append-only, so the baseline never needs to shrink
// either.
func InBaseline(t CommandType) bool {
	switch {
	case t >= 1 && t <= 35: // TypeSetAdminToken .. TypePasswordSetByToken
		return true
	case t == 60: // TypeNoticeAdd
		return true
	}
	return false
}

// BaselineTypes is InBaseline as a set: what a node that advertises no
// types is taken to know.
func BaselineTypes() TypeSet {
	var s TypeSet
	for i := range 256 {
		if InBaseline(CommandType(i)) {
			s.Add(CommandType(i))
		}
	}
	return s
}

// Gated reports whether proposing a command of type t must wait until
// every server knows t. Ignorable types are skipped by nodes that do not
// know them and baseline types are known everywhere, so neither waits;
// mail intake, which uses baseline types only, is never held up by a node
// that is down.
func Gated(t CommandType) bool {
	return !t.Ignorable() && !InBaseline(t)
}

// GatedTypes lists the gated types (see Gated) a node must know to apply
// the encoded entry data: its own type and, for an Audited command, the
// type of the command it wraps, which Apply decodes in turn and would stop
// on just the same. It is nil for the commands of every day, without
// decoding them.
func GatedTypes(data []byte) []CommandType {
	if len(data) == 0 {
		return nil
	}
	var out []CommandType
	t := CommandType(data[0])
	if Gated(t) {
		out = append(out, t)
	}
	if t == TypeAudited {
		cmd, err := Decode(data)
		if a, ok := cmd.(*Audited); err == nil && ok && len(a.Cmd) > 0 {
			if inner := CommandType(a.Cmd[0]); Gated(inner) && !slices.Contains(out, inner) {
				out = append(out, inner)
			}
		}
	}
	return out
}
