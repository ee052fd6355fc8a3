package e2e

// The checker of the fault campaign (chaos_test.go). It reads only what
// the outside world saw: the reply of every SMTP transaction the load
// generator ran, every message the customer's server received, and every
// delivery status notification that went back to the senders' domain. It
// knows nothing of the cluster's internals, so a bug there cannot hide a
// loss here.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// chaosTxn is one SMTP transaction of the load generator: one numbered
// message, sent once, to one node.
type chaosTxn struct {
	Num   int
	Node  string
	Start time.Time
	End   time.Time
	// Reply is the final reply line; "" when none was read.
	Reply string
	Err   string
	// DataSent: the body and its final dot went out, so without a reply
	// the outcome is unknown.
	DataSent bool
	QueueID  string
}

func (x chaosTxn) acked() bool   { return strings.HasPrefix(x.Reply, "250") }
func (x chaosTxn) refused() bool { return x.Reply != "" && (x.Reply[0] == '4' || x.Reply[0] == '5') }

// chaosArrival is one message as the customer's server stored it.
type chaosArrival struct {
	Num  int // -1 when it carries no campaign number
	OK   bool
	At   time.Time
	File string
	// Empty: smtp-sink created the dump and wrote nothing, because the
	// transaction never got to its end (a RCPT refused by the 4xx fault,
	// the server stopped): not an arrival.
	Empty bool
}

// chaosDSN is one notice that reached the senders' domain.
type chaosDSN struct {
	QueueID string // of the message it reports on, from the notice's Message-ID
	Kind    string // "D" delayed, "F" failed, "S" relayed
	Num     int    // from the returned headers; -1 when absent
	At      time.Time
	File    string
	// Sum identifies the notice as composed: two copies with the same sum
	// are one notice delivered twice (a leader lost between delivering it
	// and recording the delivery; its successor delivers it again after
	// the lease, as for any message), not a second notice.
	Sum string
}

// chaosReport is what one scenario proved.
type chaosReport struct {
	Sent, Acked, Refused, Unanswered int
	// Lost: acknowledged and never delivered. Must be 0.
	Lost int
	// Phantoms: refused (4xx/5xx) and delivered all the same.
	Phantoms int
	// UnansweredDelivered: no reply was read after the body went out, and
	// the message arrived; the sender would retry, so it is a duplicate in
	// the making, not a fault.
	UnansweredDelivered int
	// Duplicates: extra copies of messages that arrived more than once.
	Duplicates int
	Corrupt    int
	Strangers  int // arrivals the load generator never sent
	// ServerCut: dumps the customer's server left incomplete because the
	// campaign stopped it in the middle of a transaction.
	ServerCut  int
	DelayDSNs  int
	FailedDSNs int
	EarlyDSNs  int
	// TwiceDSNs: a notice decided and composed twice. Must be 0.
	TwiceDSNs int
	// DSNRedelivered: extra copies of one composed notice, the
	// at-least-once duplicates of a change of leader mid-delivery.
	DSNRedelivered int
	Violations     []string

	LongestUnavailable time.Duration // longest time without any 250 while the load ran
	LongestLeaderless  time.Duration
	SlowestRecovery    time.Duration // from healing a fault to the next 250
	SlowestRecoveryOf  string
	Drain              time.Duration // from healing everything to an empty spool
}

func (r *chaosReport) violate(format string, args ...any) {
	const keep = 40
	if len(r.Violations) < keep {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	} else if len(r.Violations) == keep {
		r.Violations = append(r.Violations, "... (more left out)")
	}
}

// dsnEarlySlack absorbs the coarse file clock the DSN time is read from.
const dsnEarlySlack = 100 * time.Millisecond

// chaosCheck applies the campaign's rules:
//   - every message that got 250 arrived at least once, with its body
//     intact (none is lost);
//   - a message that got 4xx/5xx either did not arrive or is a phantom;
//   - nothing arrives that was never sent, and no body is damaged;
//   - no delay notice goes out before the delay warning, none twice, and no
//     failure notice at all (nothing in the campaign fails permanently).
//
// serverStops are the times the campaign stopped the customer's server: a
// dump left incomplete just before one is the server's doing, not ours.
func chaosCheck(txns []chaosTxn, arrivals []chaosArrival, dsns []chaosDSN, delayWarning time.Duration, serverStops []time.Time) chaosReport {
	var r chaosReport
	got := map[int]int{}
	cut := func(a chaosArrival) bool {
		for _, s := range serverStops {
			if !a.At.Before(s.Add(-5*time.Second)) && !a.At.After(s.Add(time.Second)) {
				return true
			}
		}
		return false
	}
	for _, a := range arrivals {
		if a.Empty || ((a.Num < 0 || !a.OK) && cut(a)) {
			r.ServerCut++
			continue
		}
		if a.Num < 0 {
			r.Strangers++
			r.violate("the customer's server received %s, which the load generator never sent", a.File)
			continue
		}
		if !a.OK {
			r.Corrupt++
			r.violate("message %d arrived damaged (%s)", a.Num, a.File)
			continue
		}
		got[a.Num]++
	}
	byNum := map[int]chaosTxn{}
	byQueueID := map[string]chaosTxn{}
	for _, x := range txns {
		r.Sent++
		byNum[x.Num] = x
		if x.QueueID != "" {
			byQueueID[x.QueueID] = x
		}
		n := got[x.Num]
		switch {
		case x.acked():
			r.Acked++
			if n == 0 {
				r.Lost++
				r.violate("LOST: message %d got %q from %s at %s and never arrived", x.Num, x.Reply, x.Node, x.End.Format("15:04:05.000"))
			}
		case x.refused():
			r.Refused++
			if n > 0 {
				r.Phantoms++
			}
		default:
			r.Unanswered++
			if n > 0 {
				r.UnansweredDelivered++
			}
		}
		if n > 1 {
			r.Duplicates += n - 1
		}
	}
	for num := range got {
		if _, ok := byNum[num]; !ok {
			r.Strangers++
			r.violate("message %d arrived but was never sent", num)
		}
	}

	seen := map[string]int{}
	sums := map[string]string{}
	for _, d := range dsns {
		x, ok := byQueueID[d.QueueID]
		if !ok && d.Num >= 0 {
			x, ok = byNum[d.Num]
		}
		key := d.Kind + "/" + d.QueueID
		if d.QueueID == "" {
			key = fmt.Sprintf("%s/#%d", d.Kind, d.Num)
		}
		if first, ok := sums[key]; ok && d.Sum != "" && d.Sum == first {
			r.DSNRedelivered++
			continue
		}
		sums[key] = d.Sum
		seen[key]++
		if seen[key] == 2 {
			r.TwiceDSNs++
			r.violate("notice %s was composed and sent twice (%s)", key, d.File)
		}
		switch d.Kind {
		case "D":
			r.DelayDSNs++
			if !ok {
				r.violate("delay notice %s for a message the load generator never sent", d.File)
				continue
			}
			if age := d.At.Sub(x.Start); age < delayWarning-dsnEarlySlack {
				r.EarlyDSNs++
				r.violate("EARLY: delay notice for message %d after %v, before the warning time %v (%s)", x.Num, age.Round(time.Millisecond), delayWarning, d.File)
			}
		case "F":
			r.FailedDSNs++
			r.violate("failure notice for message %d (queue %s): nothing in the campaign fails permanently (%s)", d.Num, d.QueueID, d.File)
		default:
			r.violate("unexpected notice of kind %q (%s)", d.Kind, d.File)
		}
	}
	return r
}

// chaosLongestGap is the longest stretch within [from, to] with no 250.
func chaosLongestGap(txns []chaosTxn, from, to time.Time) time.Duration {
	var ends []time.Time
	for _, x := range txns {
		if x.acked() && !x.End.Before(from) && !x.End.After(to) {
			ends = append(ends, x.End)
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	prev, longest := from, time.Duration(0)
	for _, e := range append(ends, to) {
		if d := e.Sub(prev); d > longest {
			longest = d
		}
		prev = e
	}
	return longest
}

// chaosRecovery is how long after healedAt a transaction begun after it
// was first acknowledged; ok is false when none was before until.
func chaosRecovery(txns []chaosTxn, healedAt, until time.Time) (time.Duration, bool) {
	best := time.Time{}
	for _, x := range txns {
		if x.acked() && !x.Start.Before(healedAt) && (best.IsZero() || x.End.Before(best)) {
			best = x.End
		}
	}
	if best.IsZero() {
		return until.Sub(healedAt), false
	}
	return best.Sub(healedAt), true
}

// Messages of the load generator: numbered, with a body whose checksum
// travels in a header, so a damaged copy is recognised.

const chaosAlphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789,;-"

func chaosMessage(scenario, num int, rng *rand.Rand) (data []byte) {
	size := 200 + rng.IntN(6000)
	if rng.IntN(25) == 0 {
		size = 60<<10 + rng.IntN(200<<10)
	}
	var body bytes.Buffer
	line := make([]byte, 0, 80)
	for body.Len() < size {
		line = line[:0]
		n := 10 + rng.IntN(66)
		for i := 0; i < n; i++ {
			line = append(line, chaosAlphabet[rng.IntN(len(chaosAlphabet))])
		}
		body.Write(bytes.TrimLeft(line, " "))
		body.WriteByte('\n')
	}
	sum := sha256.Sum256(body.Bytes())
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Load <load@sender.test>\r\nTo: <u%d@customer.test>\r\n", num%7)
	fmt.Fprintf(&b, "Subject: chaos %d-%d\r\nMessage-ID: <chaos-%d-%d@sender.test>\r\n", scenario, num, scenario, num)
	fmt.Fprintf(&b, "X-Chaos-Id: %d-%d\r\nX-Chaos-Sum: %s\r\n\r\n", scenario, num, hex.EncodeToString(sum[:]))
	b.Write(bytes.ReplaceAll(body.Bytes(), []byte("\n"), []byte("\r\n")))
	return b.Bytes()
}

var (
	chaosIDRe    = regexp.MustCompile(`(?m)^X-Chaos-Id: (\d+)-(\d+)\s*$`)
	chaosSumRe   = regexp.MustCompile(`(?m)^X-Chaos-Sum: ([0-9a-f]{64})\s*$`)
	chaosMsgIDRe = regexp.MustCompile(`(?mi)^Message-ID: <([^>@]+)@`)
)

// chaosParseArrival reads one smtp-sink dump of the customer's server.
func chaosParseArrival(scenario int, raw []byte) (num int, ok bool) {
	msg := kit.StripSinkHeaders(raw)
	head, body, found := bytes.Cut(msg, []byte("\n\n"))
	if !found {
		return -1, false
	}
	m := chaosIDRe.FindSubmatch(head)
	if m == nil {
		return -1, false
	}
	if s, _ := strconv.Atoi(string(m[1])); s != scenario {
		return -1, false
	}
	num, _ = strconv.Atoi(string(m[2]))
	sm := chaosSumRe.FindSubmatch(head)
	if sm == nil {
		return num, false
	}
	// smtp-sink stores lines with LF endings and ends the dump with an
	// empty line of its own.
	body = bytes.TrimSuffix(body, []byte("\n"))
	sum := sha256.Sum256(body)
	return num, hex.EncodeToString(sum[:]) == string(sm[1])
}

// chaosParseDSN reads one notice from the senders' domain's sink.
func chaosParseDSN(scenario int, raw []byte) (queueID, kind string, num int, sum string) {
	msg := kit.StripSinkHeaders(raw)
	h := sha256.Sum256(msg)
	sum = hex.EncodeToString(h[:])
	num = -1
	head, _, _ := bytes.Cut(msg, []byte("\n\n"))
	if m := chaosMsgIDRe.FindSubmatch(head); m != nil {
		id := string(m[1])
		if i := strings.LastIndexByte(id, '.'); i > 0 && i+1 < len(id) {
			queueID, kind = id[:i], id[i+1:i+2]
		}
	}
	if m := chaosIDRe.FindSubmatch(msg); m != nil {
		if s, _ := strconv.Atoi(string(m[1])); s == scenario {
			num, _ = strconv.Atoi(string(m[2]))
		}
	}
	return queueID, kind, num, sum
}

// chaosReadDumps returns every dump file in dir with its modification time.
func chaosReadDumps(dir string, each func(name string, at time.Time, raw []byte)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		each(p, info.ModTime(), raw)
	}
	return nil
}

// The checker itself, on made-up outcomes: it must see a loss, a
// phantom, a duplicate, a damaged body, an early and a repeated notice.
func TestChaosCheckerFindsViolations(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	txns := []chaosTxn{
		{Num: 1, Node: "n1", Start: at(0), End: at(1), Reply: "250 2.0.0 Ok: queued as Q1", QueueID: "Q1"},
		{Num: 2, Node: "n2", Start: at(1), End: at(2), Reply: "250 2.0.0 Ok: queued as Q2", QueueID: "Q2"}, // lost
		{Num: 3, Node: "n3", Start: at(2), End: at(3), Reply: "451 4.3.0 try again"},                       // phantom
		{Num: 4, Node: "n1", Start: at(3), End: at(4), Reply: "451 4.3.0 try again"},                       // refused, absent
		{Num: 5, Node: "n1", Start: at(4), End: at(9), Err: "EOF", DataSent: true},                         // unanswered, arrived
		{Num: 6, Node: "n2", Start: at(5), End: at(6), Reply: "250 2.0.0 Ok: queued as Q6", QueueID: "Q6"}, // damaged
	}
	arrivals := []chaosArrival{
		{Num: 1, OK: true}, {Num: 1, OK: true}, {Num: 3, OK: true}, {Num: 5, OK: true},
		{Num: 6, OK: false, File: "bad"}, {Num: 99, OK: true},
	}
	dsns := []chaosDSN{
		{QueueID: "Q1", Kind: "D", Num: 1, At: at(0.5), File: "early"},
		{QueueID: "Q6", Kind: "D", Num: 6, At: at(40), File: "on time", Sum: "a"},
		{QueueID: "Q6", Kind: "D", Num: 6, At: at(41), File: "the same notice again", Sum: "a"},
		{QueueID: "Q6", Kind: "D", Num: 6, At: at(42), File: "composed twice", Sum: "b"},
	}
	r := chaosCheck(txns, arrivals, dsns, 30*time.Second, nil)
	want := chaosReport{Sent: 6, Acked: 3, Refused: 2, Unanswered: 1, Lost: 2, Phantoms: 1, UnansweredDelivered: 1,
		Duplicates: 1, Corrupt: 1, Strangers: 1, DelayDSNs: 3, EarlyDSNs: 1, TwiceDSNs: 1, DSNRedelivered: 1}
	got := r
	got.Violations = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("report\n got %+v\nwant %+v", got, want)
	}
	// Message 6 arrived only damaged: it counts as lost too.
	if !slices.ContainsFunc(r.Violations, func(v string) bool { return strings.HasPrefix(v, "LOST: message 6") }) {
		t.Errorf("a damaged only copy is not reported lost: %q", r.Violations)
	}
	if g := chaosLongestGap(txns, at(0), at(20)); g != 14*time.Second {
		t.Errorf("longest gap %v, want 14s", g)
	}
	if d, ok := chaosRecovery(txns, at(2.5), at(20)); !ok || d != 3500*time.Millisecond {
		t.Errorf("recovery %v %v, want 3.5s", d, ok)
	}
	// A dump the server left empty when the campaign stopped it is not a
	// stranger.
	r = chaosCheck(txns[:1], []chaosArrival{{Num: 1, OK: true, At: at(1)}, {Num: -1, At: at(10)}, {Num: -1, Empty: true, At: at(30)}},
		nil, time.Minute, []time.Time{at(10.5)})
	if r.ServerCut != 2 || len(r.Violations) != 0 {
		t.Errorf("a dump cut by the server's stop: %+v", r)
	}

	// A generated message survives a trip through an smtp-sink dump.
	data := chaosMessage(7, 42, rand.New(rand.NewPCG(1, 2)))
	dump := "X-Client-Addr: 10.213.7.1\nX-Mail-Args: <load@sender.test>\nReceived: from n1 ([10.213.7.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 1234;\n\tMon, 1 Jan 2030 12:00:00 +0000 (UTC)\n" +
		"Received: from x by n1.lifeline.test\n" + strings.ReplaceAll(string(data), "\r\n", "\n") + "\n"
	if num, ok := chaosParseArrival(7, []byte(dump)); num != 42 || !ok {
		t.Fatalf("parsed arrival %d %v, want 42 true", num, ok)
	}
	if num, ok := chaosParseArrival(7, []byte(strings.Replace(dump, "a", "b", 1)+"x\n")); num != 42 || ok {
		t.Fatalf("a damaged arrival parsed as %d %v", num, ok)
	}
	dsn := "X-Client-Addr: 10.213.7.2\nReceived: from n2\n\tby smtp-sink\n\tdate\nMessage-ID: <01ABC.D@n2.lifeline.test>\nSubject: Delayed Mail\n\nbody\nX-Chaos-Id: 7-42\n\n"
	if q, k, n, sum := chaosParseDSN(7, []byte(dsn)); q != "01ABC" || k != "D" || n != 42 || sum == "" {
		t.Fatalf("parsed notice %q %q %d", q, k, n)
	}
}
