//go:build race

package inbox

// raceEnabled: the race detector slows the store tenfold, which says
// nothing about the inbox's speed.
const raceEnabled = true
