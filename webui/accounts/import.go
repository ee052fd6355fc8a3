// Package accounts holds the rules for the users of organisations that the
// JSON API and the organisation console share: importing users from a CSV
// file, and the password links (welcome and reset) that let them choose a
// password before they need the Emergency Inbox.
package accounts

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"lifeline/fsm"
)

// ImportProblem is one refused line of a CSV import.
type ImportProblem struct {
	Line  int
	Email string
	Error string
}

// ParseRole reads a role as a form or an import file names it: user (the
// default) or admin.
func ParseRole(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "user":
		return fsm.RoleUser, true
	case "admin", "org-admin", "orgadmin":
		return fsm.RoleOrgAdmin, true
	}
	return "", false
}

// CheckImported validates one user of an import against the state st;
// "" when it may be imported. seen holds the addresses met so far.
func CheckImported(st *fsm.Store, u fsm.ImportedUser, seen map[string]bool) string {
	switch {
	case !fsm.ValidEmail(u.Email):
		return "not a valid email address"
	case seen[u.Email]:
		return "listed twice in this file"
	}
	if _, exists, _ := st.User(u.Email); exists {
		return "a user with this address exists already"
	}
	if u.DisplayName != "" && (len(u.DisplayName) > 200 || strings.ContainsAny(u.DisplayName, "\r\n\t")) {
		return "the name must be at most 200 characters on one line"
	}
	for _, g := range u.Groups {
		if !fsm.ValidGroup(g) {
			return "invalid group name " + strconv.Quote(g)
		}
	}
	return ""
}

// ParseUserCSV reads an import file: one user per line, the columns
// email, name, role (user or admin) and groups (separated by ; or
// spaces); a first line starting with "email" is a header. Empty lines
// and lines starting with # are skipped. Every line is checked against
// the state st (CheckImported); the users come back only if no line has a
// problem.
func ParseUserCSV(rd io.Reader, org string, st *fsm.Store) ([]fsm.ImportedUser, []ImportProblem) {
	cr := csv.NewReader(rd)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var users []fsm.ImportedUser
	var problems []ImportProblem
	seen := map[string]bool{}
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			problems = append(problems, ImportProblem{Line: line, Error: "not valid CSV: " + err.Error()})
			break
		}
		if first && strings.EqualFold(strings.TrimSpace(rec[0]), "email") {
			continue
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		field := func(i int) string {
			if i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		u := fsm.ImportedUser{Email: strings.ToLower(field(0)), DisplayName: field(1), Org: org,
			Groups: strings.FieldsFunc(field(3), func(r rune) bool { return r == ';' || r == ' ' || r == '|' })}
		role, ok := ParseRole(field(2))
		u.Role = role
		switch {
		case len(rec) > 4:
			problems = append(problems, ImportProblem{Line: line, Email: u.Email, Error: "too many columns: want email, name, role, groups"})
		case !ok:
			problems = append(problems, ImportProblem{Line: line, Email: u.Email, Error: "role must be user or admin, not " + strconv.Quote(field(2))})
		default:
			if msg := CheckImported(st, u, seen); msg != "" {
				problems = append(problems, ImportProblem{Line: line, Email: u.Email, Error: msg})
			}
		}
		seen[u.Email] = true
		users = append(users, u)
		if len(users) > fsm.MaxImport {
			problems = append(problems, ImportProblem{Line: line, Error: fmt.Sprintf("a file holds at most %d users; split it", fsm.MaxImport)})
			break
		}
	}
	if len(users) == 0 && len(problems) == 0 {
		problems = append(problems, ImportProblem{Line: 1, Error: "the file lists no users"})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return users, nil
}
