package fsm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	c := spool("Q1", "a@x.com")
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if CommandType(data[0]) != TypeSpoolAdd {
		t.Fatalf("type byte %d", data[0])
	}
	got, err := Decode(data)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

func TestCommandSizeLimit(t *testing.T) {
	c := spool("Q1")
	for i := 0; i < 2000; i++ {
		c.Recipients = append(c.Recipients, Recipient{Address: fmt.Sprintf("%040d@example.com", i), Domain: "example.com"})
	}
	if _, err := Encode(c); !errors.Is(err, ErrCommandTooLarge) {
		t.Fatalf("want ErrCommandTooLarge, got %v", err)
	}
}

// Entries already in Raft logs and snapshots must decode as they always
// did: these bytes were written by the release that first had each type,
// and are pinned byte for byte.
func TestEncodingsArePinned(t *testing.T) {
	yes, name := true, "Ann"
	audited, err := NewAudited(&OrgPut{Name: "Acme", Create: true, RequireTOTP: &yes, At: 7}, AuditEntry{At: 7, Kind: "org_add", Actor: "operator", Org: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cmd  any
		want string
	}{
		{&SetAdminToken{Hash: "abc"}, "0181a168a3616263"},
		{&DomainPut{Name: "example.com", Destination: "127.0.0.1:2525", Org: "Acme", At: 10},
			"0284a164ae3132372e302e302e313a32353235a16eab6578616d706c652e636f6da16fa441636d65a1740a"},
		{&SpoolAdd{ID: "Q1", From: "s@example.net", Recipients: []Recipient{{Address: "a@example.com", Domain: "example.com", Notify: []string{"FAILURE"}, ORCPT: "rfc822;a@example.com"}},
			Ret: "HDRS", SMTPUTF8: true, BlobHash: "h1", Size: 4096, ReceivedAt: 1_700_000_000_000_000_000},
			"0488a26174d317979cfe362a0000a4626c6f62a26831a166ad73406578616d706c652e6e6574a26964a25131a1729184a161ad61406578616d706c652e636f6da164ab6578616d706c652e636f6da16e91a74641494c555245a16fb47266633832323b61406578616d706c652e636f6da3726574a448445253a2737ad11000a175c3"},
		{&SpoolAddSummary{Add: SpoolAdd{ID: "Q2", Recipients: []Recipient{{Address: "b@example.com", Domain: "example.com"}}, BlobHash: "h2", Size: 1, ReceivedAt: 2},
			Summary: InboxSummary{From: "S <s@example.net>", Subject: "hi", Attachment: true}},
			"0a82a16186a2617402a4626c6f62a26832a166a0a26964a25132a1729182a161ad62406578616d706c652e636f6da164ab6578616d706c652e636f6da2737a01a17383a161c3a166b153203c73406578616d706c652e6e65743ea173a26869"},
		{audited, "1682a163c4130c84a163c3a16ea441636d65a27274c3a17407a16584a161a86f70657261746f72a16ba76f72675f616464a16fa441636d65a17407"},
		{&UserSet{Email: "a@acme.test", DisplayName: &name, Disabled: &yes, At: 3}, "0e84a164c3a2646ea3416e6ea165ab614061636d652e74657374a17403"},
		{&AttemptResult{At: 5, Messages: []MessageResult{{ID: "Q1", Results: []RecipientResult{{Recipient: 0, Outcome: OutcomeDeferred, Reply: "451 later", NextAttempt: 9}}}}},
			"0682a16d9182a26964a25131a272739184a16e09a16fa86465666572726564a17200a27270a9343531206c61746572a17405"},
		{&NoticeAdd{Add: SpoolAddSummary{Add: SpoolAdd{ID: "Q1.D", Recipients: []Recipient{{Address: "s@example.net", Domain: "example.net"}}, BlobHash: "h3"}}, Notified: DelayNotified{ID: "Q1", Recipients: []int{0}}},
			"3c82a16182a16186a2617400a4626c6f62a26833a166a0a26964a451312e44a1729182a161ad73406578616d706c652e6e6574a164ab6578616d706c652e6e6574a2737a00a17380a16e82a26964a25131a1729100"},
	}
	for _, c := range cases {
		got, err := Encode(c.cmd)
		if err != nil {
			t.Fatalf("%T: %v", c.cmd, err)
		}
		if hex.EncodeToString(got) != c.want {
			t.Errorf("%T encodes as\n%x\nwant\n%s", c.cmd, got, c.want)
		}
		want, _ := hex.DecodeString(c.want)
		back, err := Decode(want)
		if err != nil || !reflect.DeepEqual(back, c.cmd) {
			t.Errorf("%T: the pinned bytes decode to %+v, %v", c.cmd, back, err)
		}
	}
}
