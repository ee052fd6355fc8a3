package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"lifeline/node"
	"lifeline/smtp"
	"lifeline/webui/api"
	"lifeline/webui/apiclient"
)

// runDev starts a throwaway cluster on loopback with a demo domain whose
// customer server is down, so a newcomer sees spooling at once.
func runDev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lifeline dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 3, "how many nodes")
	smtpPort := fs.Int("smtp-port", 2525, "SMTP port of the first node; the others count up")
	httpPort := fs.Int("http-port", 8080, "HTTP port of the first node; the others count up")
	raftPort := fs.Int("raft-port", 7000, "Raft port of the first node; the others count up")
	gossipPort := fs.Int("gossip-port", 7946, "gossip port of the first node; the others count up")
	dataDir := fs.String("data-dir", "", "keep state here (default: a new temporary directory)")
	verbose := fs.Bool("verbose", false, "print the nodes' logs")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *nodes < 1 || *nodes > 9 {
		return fmt.Errorf("--nodes: between 1 and 9")
	}
	dir := *dataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "lifeline-dev-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	secret := make([]byte, 16+32)
	rand.Read(secret)
	token := hex.EncodeToString(secret[:16])
	clusterKey := secret[16:]

	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))
	tlsCfg, err := smtp.SelfSignedTLS("localhost", "127.0.0.1")
	if err != nil {
		return err
	}
	firstGossip := fmt.Sprintf("127.0.0.1:%d", *gossipPort)
	var started []*node.Node
	defer func() {
		for _, n := range started {
			n.Close()
		}
	}()
	for i := 0; i < *nodes; i++ {
		id := fmt.Sprintf("dev%d", i+1)
		cfg := node.Config{
			ID:                id,
			DataDir:           filepath.Join(dir, id),
			SMTPAddr:          fmt.Sprintf("127.0.0.1:%d", *smtpPort+i),
			HTTPAddr:          fmt.Sprintf("127.0.0.1:%d", *httpPort+i),
			RaftAddr:          fmt.Sprintf("127.0.0.1:%d", *raftPort+i),
			GossipAddr:        fmt.Sprintf("127.0.0.1:%d", *gossipPort+i),
			BootstrapExpect:   *nodes,
			AdminToken:        token,
			ClusterKey:        clusterKey,
			Hostname:          id + ".lifeline.test",
			TLS:               tlsCfg,
			Logger:            logger,
			RaftLog:           logOut,
			HeartbeatTimeout:  500 * time.Millisecond,
			ElectionTimeout:   500 * time.Millisecond,
			RemoveFailedAfter: 0,
			Web:               webHandler,
		}
		if i > 0 {
			cfg.Join = []string{firstGossip}
		}
		n, err := node.Start(cfg)
		if err != nil {
			return err
		}
		started = append(started, n)
	}
	n := started[0]
	server := "http://" + n.HTTPAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadDest, err := closedLoopbackPort()
	if err != nil {
		return err
	}
	if err := seedDemo(ctx, server, token, started, deadDest); err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	logins, err := seedInbox(ctx, server, token, started[0].SMTPAddr())
	if err != nil {
		return fmt.Errorf("demo inbox: %w", err)
	}

	fmt.Fprintf(stdout, "Lifeline dev cluster is up (state in %s).\n\n", dir)
	for i, sn := range started {
		fmt.Fprintf(stdout, "  node dev%d   SMTP %s   web http://%s\n", i+1, sn.SMTPAddr(), sn.HTTPAddr())
	}
	fmt.Fprintf(stdout, `
Demo domain demo.example delivers to %s, where nothing listens,
so its mail stays spooled. Try:

  export LIFELINE_SERVER=%s LIFELINE_TOKEN=%s
  bin/lifeline status
  bin/lifeline admin domain list
  bin/lifeline admin queue list
  swaks --server %s --to alice@demo.example    (or any SMTP client)

Operator token: %s
`, deadDest, server, token, n.SMTPAddr(), token)
	fmt.Fprintf(stdout, "\nEmergency Inbox: %s/login\n", server)
	for _, l := range logins {
		fmt.Fprintf(stdout, "  %-22s password %s  (%s)\n", l.email, l.password, l.role)
	}
	fmt.Fprintf(stdout, "Admin console: %s/admin (as the org admin, or as the operator after signing in on %s/ with the token)\n", server, server)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// closedLoopbackPort finds a loopback port with nothing listening: the
// stand-in for a customer's mail server that is down.
func closedLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

func seedDemo(ctx context.Context, server, token string, nodes []*node.Node, dest string) error {
	c := apiclient.New(server, token)
	for {
		_, err := c.AddDomain(ctx, api.DomainRequest{Name: "demo.example", Destination: dest, Org: "Demo Ltd"})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Every node answers for the domain only once the entry reached it.
	for _, n := range nodes {
		for {
			if _, ok, _ := n.Store().Domain("demo.example"); ok {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	demo := []struct{ from, to, subject, text string }{
		{"ceo@partner.example", "alice@demo.example", "Contract signed", "The signed contract is attached in spirit. Call me when your mail is back."},
		{"support@vendor.example", "bob@demo.example", "Your ticket #4711", "We have shipped the replacement part."},
		{"newsletter@news.example", "alice@demo.example", "This week in continuity", "Outages happen. Spools help."},
	}
	for i, m := range demo {
		smtpAddr := nodes[i%len(nodes)].SMTPAddr()
		body := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.demo@lifeline.test>\r\n\r\n%s\r\n",
			m.from, m.to, m.subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), m.text)
		if err := sendPlain(smtpAddr, m.from, m.to, body); err != nil {
			return err
		}
	}
	return nil
}

func sendPlain(addr, from, to, body string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, strings.NewReader(body)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
