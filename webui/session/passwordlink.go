package session

import (
	"net/http"
	"strings"

	"lifeline/fsm"
	"lifeline/webui/accounts"
)

// A password link (a welcome or a reset, issued by webui/accounts) leads
// here: the person chooses a password and may sign in with it. The link's
// token is kept only as a hash, like a session ID, and works once.

// WelcomeForm is the page behind a password link.
type WelcomeForm struct {
	Email string
	Kind  string
	Error string
}

func (m *Manager) welcomeToken(w http.ResponseWriter, r *http.Request) (fsm.PasswordToken, bool) {
	tok := r.PathValue("token")
	if len(tok) > 100 {
		m.pages.Error(w, r, http.StatusNotFound, fsm.ErrLinkInvalid)
		return fsm.PasswordToken{}, false
	}
	t, ok, err := m.b.Store().PasswordTokenOf(accounts.LinkHash(tok))
	if err != nil {
		m.pages.Unavailable(w, r, err)
		return t, false
	}
	if !ok || t.Expires <= m.b.Now().UnixNano() {
		m.pages.Error(w, r, http.StatusNotFound, fsm.ErrLinkInvalid)
		return t, false
	}
	return t, true
}

func (m *Manager) welcomePage(w http.ResponseWriter, r *http.Request) {
	t, ok := m.welcomeToken(w, r)
	if !ok {
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	m.pages.Render(w, r, http.StatusOK, welcomePage(WelcomeForm{Email: t.Email, Kind: t.Kind}))
}

func (m *Manager) welcomeSet(w http.ResponseWriter, r *http.Request) {
	if !SameOrigin(r) {
		m.pages.Error(w, r, http.StatusForbidden, "Cross-site form post refused.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	t, ok := m.welcomeToken(w, r)
	if !ok {
		return
	}
	pw, again := r.PostFormValue("password"), r.PostFormValue("password2")
	f := WelcomeForm{Email: t.Email, Kind: t.Kind}
	if pw != again {
		f.Error = "The two passwords differ."
	} else if err := CheckPasswordPolicy(pw); err != nil {
		f.Error = "The password " + strings.TrimPrefix(err.Error(), "password ") + "."
	}
	if f.Error != "" {
		m.pages.Render(w, r, http.StatusBadRequest, welcomePage(f))
		return
	}
	hash, err := HashPassword(pw, m.rand())
	if err != nil {
		m.pages.Unavailable(w, r, err)
		return
	}
	if !m.pages.Apply(w, r, m.b.ApplyVisible, &fsm.PasswordSetByToken{Hash: accounts.LinkHash(r.PathValue("token")), PasswordHash: hash, At: m.b.Now().UnixNano(), Addr: ClientAddr(r)}) {
		return
	}
	http.Redirect(w, r, "/login?flash=password", http.StatusSeeOther)
}
