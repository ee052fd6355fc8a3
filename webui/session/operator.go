package session

import (
	"net/http"

	"lifeline/fsm"
)

// The operator signs in on the status page with the operator token; the
// cookie then carries the token itself, which opens the status page's
// details and every organisation's console. The JSON API takes the same
// token as a bearer token.

// Operator is the operator's name: the role of the operator's viewer in
// the console and the actor in the audit log.
const Operator = "operator"

const operatorCookie = "lifeline_operator"

// OperatorSignedIn reports whether r carries the operator's sign-in and
// returns its token.
func (m *Manager) OperatorSignedIn(r *http.Request) (token string, ok bool) {
	c, err := r.Cookie(operatorCookie)
	if err != nil || c.Value == "" {
		return "", false
	}
	ok, _ = m.b.Store().IsAdminToken(c.Value)
	return c.Value, ok
}

// OperatorViewer is the operator, signed in with token, as a viewer of
// the console.
func OperatorViewer(token string) *Viewer {
	return &Viewer{User: fsm.User{Email: Operator, Role: Operator}, SessionID: token, CSRF: CSRFToken(token), Operator: true}
}

func (m *Manager) operatorSignIn(w http.ResponseWriter, r *http.Request) {
	if !SameOrigin(r) {
		http.Error(w, "cross-site form post refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := r.PostFormValue("token")
	ok, err := m.b.Store().IsAdminToken(tok)
	if err != nil {
		http.Error(w, "state store unavailable", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		http.Error(w, "wrong operator token", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: operatorCookie, Value: tok, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: 8 * 3600})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (m *Manager) operatorSignOut(w http.ResponseWriter, r *http.Request) {
	if !SameOrigin(r) {
		http.Error(w, "cross-site form post refused", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: operatorCookie, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
