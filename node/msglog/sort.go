package msglog

import (
	"bytes"
	"sort"
)

// sortKeysDesc orders entry keys newest first.
func sortKeysDesc(keys [][]byte) {
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) > 0 })
}

// Merge combines newest-first result lists from several nodes into one,
// newest first, at most limit long.
func Merge(lists [][]Entry, limit int) []Entry {
	var all []Entry
	for _, l := range lists {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return Less(&all[i], &all[j]) })
	if len(all) > limit {
		all = all[:limit]
	}
	return all
}
