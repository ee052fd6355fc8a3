package fsm

// Domain is a protected domain: mail for it is accepted and delivered to
// Destination.
type Domain struct {
	Name        string `codec:"n" json:"name"`
	Destination string `codec:"d" json:"destination"`
	Org         string `codec:"o" json:"org,omitempty"`
	CreatedAt   int64  `codec:"c" json:"-"`
	UpdatedAt   int64  `codec:"u" json:"-"`
	// Spooling is set while the destination keeps failing; SpoolingSince
	// says when it started and LastError what the destination last said.
	Spooling      bool   `codec:"sp,omitempty" json:"spooling"`
	SpoolingSince int64  `codec:"ss,omitempty" json:"-"`
	LastError     string `codec:"le,omitempty" json:"last_error,omitempty"`
	// LastDelivered is when mail last reached the destination.
	LastDelivered int64 `codec:"ld,omitempty" json:"-"`
	// Destinations, when set (DomainSet), are tried in order of
	// preference; Destination is then the most preferred of them.
	Destinations []Destination `codec:"ds,omitempty" json:"destinations,omitempty"`
}

// Recipient states.
const (
	StateQueued    = "queued"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// RecipientState is a recipient and where its delivery stands.
type RecipientState struct {
	Recipient
	State       string `codec:"s"`
	Attempts    int    `codec:"at,omitempty"`
	NextAttempt int64  `codec:"na,omitempty"`
	LastAttempt int64  `codec:"la,omitempty"`
	LastReply   string `codec:"lr,omitempty"`
	RemoteMTA   string `codec:"rm,omitempty"`
	// DelayNotified records that the one delayed DSN went out.
	DelayNotified bool `codec:"dn,omitempty"`
	// History holds the latest attempts, oldest first.
	History []AttemptRecord `codec:"hi,omitempty"`
}

// Done reports whether the recipient needs no more attempts.
func (r *RecipientState) Done() bool {
	return r.State == StateDelivered || r.State == StateFailed
}

// Message is a spooled message: the envelope of its SpoolAdd plus the state
// of each recipient.
type Message struct {
	ID         string           `codec:"id"`
	From       string           `codec:"f"`
	Recipients []RecipientState `codec:"r"`
	Ret        string           `codec:"ret,omitempty"`
	EnvID      string           `codec:"env,omitempty"`
	Body       string           `codec:"b,omitempty"`
	SMTPUTF8   bool             `codec:"u,omitempty"`
	Helo       string           `codec:"h,omitempty"`
	RemoteAddr string           `codec:"ra,omitempty"`
	TLS        bool             `codec:"tls,omitempty"`
	Node       string           `codec:"node,omitempty"`
	BlobHash   string           `codec:"blob"`
	Size       int64            `codec:"sz"`
	ReceivedAt int64            `codec:"at"`
	// Held messages get no attempts until released.
	Held bool `codec:"held,omitempty"`
	// Bounce asks the leader to return the message to its sender.
	Bounce bool `codec:"bounce,omitempty"`
}

// Retired is the short record kept after a message leaves the spool.
type Retired struct {
	ID         string           `codec:"id"`
	From       string           `codec:"f"`
	Recipients []RecipientState `codec:"r"`
	Size       int64            `codec:"sz"`
	ReceivedAt int64            `codec:"at"`
	RetiredAt  int64            `codec:"rt"`
	// Reason is "delivered", "failed", "deleted" or a mix per recipient.
	Reason string `codec:"why"`
}
