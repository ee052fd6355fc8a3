// Package outbound is the SMTP client the delivery engine uses: it finds
// where a domain's mail goes (transport map, MX, implicit MX), opens a
// connection that can carry several messages, and reports an outcome for
// every recipient.
//
// The client speaks SMTP itself instead of wrapping go-smtp's Client:
// go-smtp v0.25.1 can only start STARTTLS through NewClientStartTLS, which
// greets the server as "EHLO localhost" before the caller can name itself
// (RFC 5321 §4.1.4 wants our FQDN there), repeats EHLO after every RSET,
// declares BODY=8BITMIME for every message, and cannot be cancelled by a
// context. What is left is small: reply parsing, a handful of commands and
// the stdlib's dot-stuffing writer.
//
// PIPELINING (RFC 2920) is used for MAIL and RCPT when the server offers
// it; DATA is always sent on its own so the body is never written before
// the server has accepted at least one recipient.
//
// Nothing here touches DNS or the network by itself: the Dialer and the
// Resolver are injected, so tests stay on loopback.
package outbound
