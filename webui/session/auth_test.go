package session

import (
	"strings"
	"testing"
	"time"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery", nil)
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q %v", h, err)
	}
	if !VerifyPassword(h, "correct horse battery") || VerifyPassword(h, "correct horse batterz") {
		t.Fatal("verify")
	}
	h2, _ := HashPassword("correct horse battery", nil)
	if h == h2 {
		t.Fatal("same salt twice")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA", "$argon2id$v=19$m=8,t=1,p=1$!!$AA"} {
		if VerifyPassword(bad, "x") {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestTOTPStepsAndSkew(t *testing.T) {
	k, err := NewTOTPKey("Lifeline", "a@b.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_015, 0)
	step := now.Unix() / TOTPPeriod
	for _, d := range []int64{-1, 0, 1} {
		code, _ := TOTPCode(k.Secret(), time.Unix((step+d)*TOTPPeriod, 0))
		got, ok := MatchTOTP(k.Secret(), code, now)
		if !ok || got != step+d {
			t.Errorf("skew %d: step %d ok %v", d, got, ok)
		}
	}
	old, _ := TOTPCode(k.Secret(), time.Unix((step-2)*TOTPPeriod, 0))
	if _, ok := MatchTOTP(k.Secret(), old, now); ok {
		t.Error("a code two steps old was accepted")
	}
	if _, ok := MatchTOTP(k.Secret(), "12345", now); ok {
		t.Error("a short code was accepted")
	}
}

func TestCSRFAndLimiter(t *testing.T) {
	if !CheckCSRF("s1", CSRFToken("s1")) || CheckCSRF("s2", CSRFToken("s1")) || CheckCSRF("s1", "") {
		t.Fatal("csrf")
	}
	l := NewLimiter(2, time.Minute)
	now := time.Unix(100, 0)
	l.Fail("a", now)
	if b, _ := l.Blocked("a", now); b {
		t.Fatal("blocked after one failure")
	}
	l.Fail("a", now)
	if b, wait := l.Blocked("a", now.Add(10*time.Second)); !b || wait != 50*time.Second {
		t.Fatalf("not blocked: %v %v", b, wait)
	}
	if b, _ := l.Blocked("a", now.Add(time.Minute)); b {
		t.Fatal("still blocked after the window")
	}
}
