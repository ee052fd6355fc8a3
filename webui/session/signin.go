package session

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
)

// loginCookie carries the sign-in form's token before there is a session
// (a double-submit token: another site can neither read the cookie nor
// set the field to match it).
const loginCookie = "lifeline_login"

// LoginForm is what the sign-in page shows.
type LoginForm struct {
	Email   string
	AskCode bool
	Next    string
	Token   string
	Error   string
	Notice  string
}

func (m *Manager) newLoginToken(w http.ResponseWriter, r *http.Request) string {
	b := make([]byte, 24)
	io.ReadFull(m.rand(), b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	return tok
}

// safeNext keeps a redirect after sign-in on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return ""
	}
	return next
}

func (m *Manager) loginPage(w http.ResponseWriter, r *http.Request) {
	if v, _ := m.Lookup(r); v != nil {
		http.Redirect(w, r, HomeOf(v), http.StatusSeeOther)
		return
	}
	f := LoginForm{Next: safeNext(r.URL.Query().Get("next")), Token: m.newLoginToken(w, r)}
	if r.URL.Query().Get("flash") == "password" {
		f.Notice = "Your password is set. Sign in with it now, or keep it for when you need the Emergency Inbox."
	}
	m.pages.Render(w, r, http.StatusOK, loginPage(f))
}

func (m *Manager) login(w http.ResponseWriter, r *http.Request) {
	if !SameOrigin(r) {
		m.pages.Error(w, r, http.StatusForbidden, "Cross-site form post refused.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || r.PostFormValue("csrf") != c.Value {
		m.pages.Error(w, r, http.StatusForbidden, "This sign-in form has expired or came from another site. Reload the page and try again.")
		return
	}
	now := m.b.Now()
	addr := ClientAddr(r)
	email := strings.ToLower(strings.TrimSpace(r.PostFormValue("email")))
	password := r.PostFormValue("password")
	code := strings.ReplaceAll(r.PostFormValue("code"), " ", "")
	form := LoginForm{Email: email, Next: safeNext(r.PostFormValue("next")), Token: c.Value}

	if blocked, wait := m.limiter.Blocked(addr, now); blocked {
		m.tooMany(w, r, form, wait)
		return
	}
	u, exists, err := m.b.Store().User(email)
	if err != nil {
		m.pages.Unavailable(w, r, err)
		return
	}
	if exists && u.FailedLogins >= m.cfg.AccountFailures && now.UnixNano()-u.FailedSince < fsm.LoginFailureWindow {
		m.tooMany(w, r, form, time.Duration(u.FailedSince+fsm.LoginFailureWindow-now.UnixNano()))
		return
	}
	ok := false
	if exists && !u.Disabled {
		ok = VerifyPassword(u.PasswordHash, password)
	} else {
		BurnPasswordTime(password)
	}
	if !ok {
		m.loginFailed(w, r, form, email, "wrong password", "Wrong email or password.")
		return
	}
	var step int64
	if u.TOTPEnrolled() {
		form.AskCode = true
		if code == "" {
			form.Error = "Enter the code from your authenticator app, with your password again."
			m.pages.Render(w, r, http.StatusUnauthorized, loginPage(form))
			return
		}
		st, ok := MatchTOTP(u.TOTPSecret, code, now)
		if !ok {
			m.loginFailed(w, r, form, email, "wrong code", "Wrong code. Enter the current code from your authenticator app.")
			return
		}
		step = st
	}
	id, hash, err := NewSessionID(m.rand())
	if err != nil {
		m.pages.Unavailable(w, r, err)
		return
	}
	cmd := &fsm.SessionCreate{Hash: hash, Email: u.Email, Expires: now.Add(m.cfg.SessionIdle).UnixNano(), TOTPStep: step, At: now.UnixNano(), Addr: addr}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := m.b.ApplyVisible(ctx, cmd); err != nil {
		var ve *fsm.ValidationError
		if errors.As(err, &ve) && ve.Msg == fsm.ErrTOTPReused {
			// The code signed someone in already, perhaps on another
			// node a moment ago: RFC 6238 §5.2 lets a code work once.
			m.loginFailed(w, r, form, email, "reused code", "That code was already used. Wait for the next code.")
			return
		}
		if errors.As(err, &ve) {
			m.loginFailed(w, r, form, email, ve.Msg, "Wrong email or password.")
			return
		}
		m.pages.Unavailable(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	next := form.Next
	if next == "" {
		next = HomeOf(&Viewer{User: u})
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (m *Manager) loginFailed(w http.ResponseWriter, r *http.Request, form LoginForm, email, detail, msg string) {
	now := m.b.Now()
	m.limiter.Fail(ClientAddr(r), now)
	if len(email) > 254 {
		email = email[:254]
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := m.b.Apply(ctx, &fsm.AuditAdd{Entry: fsm.AuditEntry{At: now.UnixNano(), Kind: fsm.AuditLoginFailed, Actor: email, Addr: ClientAddr(r), Detail: detail}}); err != nil {
		m.logger.Warn("audit of a failed login not stored", "err", err)
	}
	form.Error = msg
	m.pages.Render(w, r, http.StatusUnauthorized, loginPage(form))
}

func (m *Manager) tooMany(w http.ResponseWriter, r *http.Request, form LoginForm, wait time.Duration) {
	secs := int(wait.Seconds()) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	form.Error = fmt.Sprintf("Too many failed sign-ins. Try again in %d minutes.", (secs+59)/60)
	m.pages.Render(w, r, http.StatusTooManyRequests, loginPage(form))
}

func (m *Manager) logout(w http.ResponseWriter, r *http.Request) {
	v := ViewerOf(r)
	if !m.pages.Apply(w, r, m.b.ApplyVisible, &fsm.SessionDelete{Hash: HashSessionID(v.SessionID)}) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// TOTPForm is the enrolment page.
type TOTPForm struct {
	Enrolled bool
	Required bool
	Secret   string
	QR       string // data: URL of a PNG
	Error    string
}

const totpIssuer = "Lifeline"

func (m *Manager) totpForm(v *Viewer, secret string) (TOTPForm, error) {
	f := TOTPForm{Enrolled: v.User.TOTPEnrolled(), Required: v.Org.RequireTOTP}
	if f.Enrolled {
		return f, nil
	}
	var err error
	key, err := TOTPKeyFromSecret(totpIssuer, v.User.Email, secret)
	if secret == "" {
		key, err = NewTOTPKey(totpIssuer, v.User.Email, m.rand())
	}
	if err != nil {
		return f, err
	}
	f.Secret = key.Secret()
	img, err := key.Image(200, 200)
	if err != nil {
		return f, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return f, err
	}
	f.QR = "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())
	return f, nil
}

func (m *Manager) totpPage(w http.ResponseWriter, r *http.Request) {
	v := ViewerOf(r)
	f, err := m.totpForm(v, "")
	if err != nil {
		m.pages.Unavailable(w, r, err)
		return
	}
	m.pages.Render(w, r, http.StatusOK, totpPage(v, f))
}

func (m *Manager) totpEnrol(w http.ResponseWriter, r *http.Request) {
	v := ViewerOf(r)
	if v.User.TOTPEnrolled() {
		m.pages.Error(w, r, http.StatusConflict, "Two-step sign-in is already on for this account. An administrator can reset it.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("secret"))
	code := strings.ReplaceAll(r.PostFormValue("code"), " ", "")
	f, err := m.totpForm(v, secret)
	if err != nil || secret == "" {
		m.pages.Error(w, r, http.StatusBadRequest, "The enrolment form is damaged. Reload the page.")
		return
	}
	now := m.b.Now()
	step, ok := MatchTOTP(secret, code, now)
	if !ok {
		f.Error = "That code does not match. Enter the current 6-digit code from your app."
		m.pages.Render(w, r, http.StatusBadRequest, totpPage(v, f))
		return
	}
	if !m.pages.Apply(w, r, m.b.ApplyVisible, &fsm.TOTPSet{Email: v.User.Email, Secret: secret, Step: step, At: now.UnixNano(), Addr: ClientAddr(r)}) {
		return
	}
	http.Redirect(w, r, HomeOf(v), http.StatusSeeOther)
}
