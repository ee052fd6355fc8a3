package session

// The credentials: argon2id password hashes, TOTP second factors, session
// IDs, CSRF tokens and the per-address limiter of failed logins.
// Everything that needs time or randomness takes it as an argument, so
// callers inject the clock.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum for argon2id (19 MiB, 2 passes, one
// lane), which keeps a login under 50 ms on a small appliance node.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	saltLen      = 16
)

// HashPassword returns the PHC string of password under argon2id (RFC
// 9106) with a salt read from rnd.
func HashPassword(password string, rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches the PHC string encoded.
// The parameters come from the string, so hashes made with older settings
// keep working.
func VerifyPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<21 || t == 0 || t > 16 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// DummyHash is verified against when an account does not exist, so a
// failed login takes as long whether or not the address is known.
var dummySalt = []byte("lifeline-dummy-s")

// BurnPasswordTime spends the time a verification would.
func BurnPasswordTime(password string) {
	argon2.IDKey([]byte(password), dummySalt, argonTime, argonMemory, argonThreads, argonKeyLen)
}

// TOTPPeriod is the RFC 6238 time step.
const TOTPPeriod = 30

// NewTOTPKey creates a secret for account under issuer.
func NewTOTPKey(issuer, account string, rnd io.Reader) (*otp.Key, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	return totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: TOTPPeriod, Rand: rnd})
}

// TOTPKeyFromSecret rebuilds the key of a secret (for its QR code).
func TOTPKeyFromSecret(issuer, account, secret string) (*otp.Key, error) {
	u := fmt.Sprintf("otpauth://totp/%s:%s?secret=%s&issuer=%s&period=%d&digits=6&algorithm=SHA1", issuer, account, secret, issuer, TOTPPeriod)
	return otp.NewKeyFromURL(u)
}

// MatchTOTP checks code against secret at now and returns the time step
// it belongs to. Like pquerna/otp it allows one step of clock skew either
// way (RFC 6238 §5.2), but it returns the step so the caller can refuse a
// step that was already used: pquerna/otp remembers nothing.
func MatchTOTP(secret, code string, now time.Time) (step int64, ok bool) {
	code = strings.TrimSpace(code)
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / TOTPPeriod
	for _, s := range []int64{cur, cur - 1, cur + 1} {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*TOTPPeriod, 0), totp.ValidateOpts{Period: TOTPPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return s, true
		}
	}
	return 0, false
}

// TOTPCode is the code for secret at t (for tests and tools).
func TOTPCode(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{Period: TOTPPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// NewSessionID returns a random session ID for the cookie and the hash of
// it that the replicated state keeps.
func NewSessionID(rnd io.Reader) (id, hash string, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return "", "", err
	}
	id = base64.RawURLEncoding.EncodeToString(b)
	return id, HashSessionID(id), nil
}

// HashSessionID is how a session ID is kept in state.
func HashSessionID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// CSRFToken derives the per-session form token from the session ID. The ID
// is secret (an HttpOnly cookie), so another site can neither read nor
// compute the token, and every node derives the same one without storing
// it.
func CSRFToken(sessionID string) string {
	m := hmac.New(sha256.New, []byte(sessionID))
	m.Write([]byte("lifeline csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF compares a submitted token with the session's.
func CheckCSRF(sessionID, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(CSRFToken(sessionID)), []byte(got)) == 1
}

// Limiter counts failures per key (a client address) in a fixed window. It
// is per node: the per-account limit, which matters more, is kept in the
// replicated state.
type Limiter struct {
	Max    int
	Window time.Duration

	mu   sync.Mutex
	hits map[string]*window
}

type window struct {
	start time.Time
	n     int
}

// NewLimiter allows max failures per key per window.
func NewLimiter(max int, win time.Duration) *Limiter {
	return &Limiter{Max: max, Window: win, hits: map[string]*window{}}
}

// Blocked reports whether key has used up its failures at now, and when
// it may try again.
func (l *Limiter) Blocked(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.hits[key]
	if w == nil || now.Sub(w.start) >= l.Window {
		return false, 0
	}
	if w.n >= l.Max {
		return true, w.start.Add(l.Window).Sub(now)
	}
	return false, 0
}

// Fail records one failure of key.
func (l *Limiter) Fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.hits[key]
	if w == nil || now.Sub(w.start) >= l.Window {
		if len(l.hits) > 100_000 {
			// Bounded memory under a spray of addresses: forget
			// expired windows.
			for k, v := range l.hits {
				if now.Sub(v.start) >= l.Window {
					delete(l.hits, k)
				}
			}
		}
		w = &window{start: now}
		l.hits[key] = w
	}
	w.n++
}

// ErrWeakPassword is returned for passwords too short to keep.
var ErrWeakPassword = errors.New("password must be at least 10 characters")

// CheckPasswordPolicy refuses passwords too weak to store.
func CheckPasswordPolicy(p string) error {
	if len(p) < 10 {
		return ErrWeakPassword
	}
	if len(p) > 1024 {
		return errors.New("password must be at most 1024 characters")
	}
	return nil
}
