package fsm

import "encoding/binary"

// The store's layout: every bbolt bucket, the shape of its keys and
// values, and every key of the meta bucket. Nothing else names a bucket
// or builds a key. The store keeps state on disk, indexed, so a spool of a
// million messages needs no million Go objects (docs/design.md §3.4).
//
// Names and key shapes are part of the on-disk format, which snapshots
// carry from one release to the next: a bucket is never renamed, and a
// changed shape is a new bucket.
//
// In the shapes, at(8), seq(8) and the like are big-endian uint64s, so
// keys sort by them; \x00 separates a variable-length part from the next.
var (
	bucketMeta = []byte("meta") // single values under the key* names below

	// Domains.
	bucketDomains    = []byte("domains")    // name -> Domain
	bucketDomainReqs = []byte("domainreqs") // name -> DomainRequestRecord

	// The spool.
	bucketMessages = []byte("messages") // queue ID -> Message
	bucketDue      = []byte("due")      // next(8) id \x00 rcpt(2) -> nil: dueKey
	bucketBlobRefs = []byte("blobrefs") // blob hash -> references(8)
	bucketRetired  = []byte("retired")  // at(8) id -> Retired

	// The Emergency Inbox.
	bucketInbox      = []byte("inbox")      // addr \x00 at(8) id -> InboxSummary
	bucketInboxCount = []byte("inboxcount") // addr -> count(8)
	bucketSeen       = []byte("seen")       // addr \x00 id -> nil
	bucketDrafts     = []byte("drafts")     // owner \x00 id -> Draft

	// Accounts.
	bucketOrgs        = []byte("orgs")        // name -> Org
	bucketOrgSettings = []byte("orgsettings") // org -> OrgSettings
	bucketUsers       = []byte("users")       // email -> User
	bucketOrgUsers    = []byte("orgusers")    // org \x00 email -> nil
	bucketSessions    = []byte("sessions")    // sha256(session ID) hex -> Session
	bucketSessExp     = []byte("sessexp")     // expires(8) hash -> nil
	bucketPwTokens    = []byte("pwtokens")    // sha256(token) hex -> PasswordToken

	// The audit log.
	bucketAudit    = []byte("audit")    // at(8) seq(8) -> AuditEntry
	bucketAuditSeq = []byte("auditseq") // seq(8) -> audit key at(8) seq(8)

	// Alerts.
	bucketAlertEpisodes = []byte("alertepisodes") // domain -> AlertEpisode
	bucketSMSOutbox     = []byte("smsoutbox")     // created(8) key -> SMSMessage
)

// Keys of bucketMeta.
var (
	keyApplied     = []byte("applied")      // index(8) of the last applied entry
	keyAdminToken  = []byte("admin_token")  // hash of the operator token
	keyLastRetry   = []byte("last_retry")   // at(8) of the latest operator retry
	keySMSGateway  = []byte("sms_gateway")  // SMSGateway
	keyAuditSeq    = []byte("audit_seq")    // seq(8) of the newest audit entry
	keyAuditCount  = []byte("audit_count")  // count(8) of audit entries kept
	keyAuditHead   = []byte("audit_head")   // hex hash of the newest audit entry
	keyAuditAnchor = []byte("audit_anchor") // seq(8) hash of the newest pruned entry
)

// allBuckets are created when a store is opened.
func allBuckets() [][]byte {
	return [][]byte{
		bucketMeta,
		bucketDomains, bucketDomainReqs,
		bucketMessages, bucketDue, bucketBlobRefs, bucketRetired,
		bucketInbox, bucketInboxCount, bucketSeen, bucketDrafts,
		bucketOrgs, bucketOrgSettings, bucketUsers, bucketOrgUsers, bucketSessions, bucketSessExp, bucketPwTokens,
		bucketAudit, bucketAuditSeq,
		bucketAlertEpisodes, bucketSMSOutbox,
	}
}

// dueKey orders recipients by their next attempt, so the scheduler reads the
// head of an index instead of scanning every message.
func dueKey(next int64, id string, rcpt int) []byte {
	k := make([]byte, 8+len(id)+1+2)
	binary.BigEndian.PutUint64(k, uint64(next))
	copy(k[8:], id)
	k[8+len(id)] = 0
	binary.BigEndian.PutUint16(k[9+len(id):], uint16(rcpt))
	return k
}

func parseDueKey(k []byte) (next int64, id string, rcpt int, ok bool) {
	if len(k) < 8+1+2 {
		return 0, "", 0, false
	}
	next = int64(binary.BigEndian.Uint64(k))
	id = string(k[8 : len(k)-3])
	rcpt = int(binary.BigEndian.Uint16(k[len(k)-2:]))
	return next, id, rcpt, true
}

func retiredKey(at int64, id string) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(at))
	copy(k[8:], id)
	return k
}

func inboxPrefix(addr string) []byte {
	return append([]byte(addr), 0)
}

func inboxKey(addr string, at int64, id string) []byte {
	k := make([]byte, 0, len(addr)+1+8+len(id))
	k = append(append(k, addr...), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, id...)
}

func seenKey(addr, id string) []byte {
	return append(inboxPrefix(addr), id...)
}

func draftPrefix(owner string) []byte {
	return append([]byte(owner), 0)
}

func draftKey(owner, id string) []byte {
	return append(draftPrefix(owner), id...)
}

func orgUserPrefix(org string) []byte {
	return append([]byte(org), 0)
}

func orgUserKey(org, email string) []byte {
	return append(orgUserPrefix(org), email...)
}

func sessExpKey(exp int64, hash string) []byte {
	k := make([]byte, 8+len(hash))
	binary.BigEndian.PutUint64(k, uint64(exp))
	copy(k[8:], hash)
	return k
}

func auditKey(at int64, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(at))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func smsKey(created int64, key string) []byte {
	k := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(created))
	copy(k[8:], key)
	return k
}
