package mailparse

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

func TestComposeThenParse(t *testing.T) {
	var buf bytes.Buffer
	err := Compose(&buf, &Outgoing{
		From: &mail.Address{Name: "Ålice", Address: "alice@acme.test"},
		To:   []*mail.Address{{Address: "carla@external.example"}}, Cc: []*mail.Address{{Address: "carol@acme.test"}},
		Subject: "Re: Zahlen für Q3", Text: "Line one\nLine two\n", Date: time.Unix(1_800_000_000, 0),
		MessageID: "abc@lifeline.test", InReplyTo: []string{"q1@external.example"}, References: []string{"q0@x", "q1@external.example"},
		Files: []Attachment{{Name: "q3.csv", Type: "text/csv", Body: strings.NewReader("a,b\n1,2\n")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := buf.String()
	if strings.Contains(strings.ReplaceAll(raw, "\r\n", ""), "\n") {
		t.Fatal("bare LF in a composed message")
	}
	m, err := Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Re: Zahlen für Q3" || m.MessageID != "abc@lifeline.test" || strings.Join(m.References, " ") != "q0@x q1@external.example" ||
		len(m.InReplyTo) != 1 || !strings.Contains(m.From, "Ålice") || m.Text != "Line one\nLine two\n" {
		t.Fatalf("parsed: %+v", m)
	}
	var files []Part
	for _, p := range m.Parts {
		if p.IsAttachment() {
			files = append(files, p)
		}
	}
	if len(files) != 1 || files[0].Filename != "q3.csv" {
		t.Fatalf("parts: %+v", m.Parts)
	}
	err = OpenPart(strings.NewReader(raw), files[0].Index, func(p Part, r io.Reader) error {
		b, _ := io.ReadAll(r)
		if string(b) != "a,b\n1,2\n" && string(b) != "a,b\r\n1,2\r\n" {
			t.Errorf("attachment body %q", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(strings.NewReader(raw))
	if s.Subject != "Re: Zahlen für Q3" || !s.Attachment || !strings.Contains(s.From, "alice@acme.test") {
		t.Fatalf("summary: %+v", s)
	}
	if OpenPart(strings.NewReader(raw), 99, func(Part, io.Reader) error { return nil }) != ErrNoPart {
		t.Fatal("missing part found")
	}
}

func TestSummarizeNeverFails(t *testing.T) {
	for _, in := range []string{"", "garbage without header end", "Subject: =?utf-8?B?bad?=\r\n\r\n", "From: <<<\r\nSubject: ok\r\n\r\n"} {
		Summarize(strings.NewReader(in))
	}
	if _, err := ParseAddressList("a@b.test; Bob <bob@c.test>"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"not an address", "a@", "<>"} {
		if _, err := ParseAddressList(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
