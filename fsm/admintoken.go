package fsm

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
)

// HashAdminToken is how the operator token is kept in replicated state
// (SetAdminToken). The token is 256 random bits, not a password, so a
// plain sha256 is enough.
func HashAdminToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IsAdminToken reports whether tok is the cluster's operator token. The
// comparison takes the same time wherever the hashes differ.
func (s *Store) IsAdminToken(tok string) (bool, error) {
	want, err := s.AdminTokenHash()
	if err != nil {
		return false, err
	}
	return tok != "" && want != "" && subtle.ConstantTimeCompare([]byte(HashAdminToken(tok)), []byte(want)) == 1, nil
}
