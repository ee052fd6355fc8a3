package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"lifeline/cluster/blob"
	"lifeline/fsm"
)

// Cluster RPCs share the Raft port (after the protoRPC byte). Each request
// is an op byte and a length-prefixed header; a blob push streams its body
// after the header. Each response is a status byte and a length-prefixed
// message, then, for a fetch, the body.
const (
	opApply   byte = 1
	opBlobPut byte = 2
	opBlobGet byte = 3
)

const (
	stOK         byte = 0
	stValidation byte = 1
	stNoLeader   byte = 2
	stTimeout    byte = 3
	stUnknown    byte = 4
	stError      byte = 5
	stNotFound   byte = 6
	// stUpgrade: the leader refused a command type some server may not
	// know. A follower of an older release reads it as stError, which
	// also commits nothing.
	stUpgrade byte = 7
)

// maxHeader bounds any length-prefixed field read from a peer.
const maxHeader = fsm.MaxCommandSize + 1024

func writeFrame(w io.Writer, b byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = b
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	return readFrameLimit(r, maxHeader)
}

// maxAppResponse bounds an application RPC's answer (a page of the
// message log, say).
const maxAppResponse = 16 << 20

func readFrameLimit(r io.Reader, limit uint32) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > limit {
		return 0, nil, fmt.Errorf("cluster: frame of %d bytes is too large", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

func statusOf(err error) (byte, []byte) {
	var ve *fsm.ValidationError
	var ue *UpgradeRequiredError
	switch {
	case err == nil:
		return stOK, nil
	case errors.As(err, &ve):
		return stValidation, []byte(ve.Msg)
	case errors.As(err, &ue):
		return stUpgrade, encodeUpgradeRequired(ue)
	case errors.Is(err, ErrNoLeader):
		return stNoLeader, []byte(err.Error())
	case errors.Is(err, ErrTimeout):
		return stTimeout, []byte(err.Error())
	case errors.Is(err, ErrUnknown):
		return stUnknown, []byte(err.Error())
	case errors.Is(err, blob.ErrNotFound):
		return stNotFound, []byte(err.Error())
	}
	return stError, []byte(err.Error())
}

func errorOf(st byte, msg []byte) error {
	switch st {
	case stOK:
		return nil
	case stValidation:
		return &fsm.ValidationError{Msg: string(msg)}
	case stNoLeader:
		return ErrNoLeader
	case stTimeout:
		return ErrTimeout
	case stUnknown:
		return ErrUnknown
	case stNotFound:
		return blob.ErrNotFound
	case stUpgrade:
		return decodeUpgradeRequired(msg)
	}
	return fmt.Errorf("cluster: peer: %s", msg)
}

// serveRPC answers one peer connection until it closes.
func (c *Cluster) serveRPC(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64<<10)
	bw := bufio.NewWriterSize(conn, 64<<10)
	for {
		// An idle pooled connection is closed after a while; the client
		// redials.
		conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
		op, hdr, err := readFrame(br)
		if err != nil {
			return
		}
		conn.SetReadDeadline(time.Time{})
		switch op {
		case opApply:
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ApplyTimeout)
			err := c.checkUpgraded(hdr)
			if err == nil {
				_, err = c.applyLocal(ctx, hdr)
			}
			cancel()
			st, msg := statusOf(err)
			err = writeFrame(bw, st, msg)
		case opBlobPut:
			err = c.serveBlobPut(br, bw, hdr)
		case opBlobGet:
			err = c.serveBlobGet(bw, hdr)
		case opTime:
			err = c.serveTime(bw)
		default:
			if op < OpAppFirst || c.cfg.AppHandler == nil {
				return
			}
			resp, aerr := c.cfg.AppHandler(op, hdr)
			if aerr != nil {
				err = writeFrame(bw, stError, []byte(aerr.Error()))
			} else {
				err = writeFrame(bw, stOK, resp)
			}
		}
		if err != nil || bw.Flush() != nil {
			return
		}
	}
}

func (c *Cluster) serveBlobPut(br *bufio.Reader, bw *bufio.Writer, hdr []byte) error {
	if len(hdr) != 64+8 || c.cfg.Blobs == nil {
		return errors.New("bad blob put")
	}
	h := string(hdr[:64])
	size := int64(binary.BigEndian.Uint64(hdr[64:]))
	if !blob.ValidHash(h) || size < 0 || size > c.cfg.MaxBlobSize {
		return errors.New("bad blob put")
	}
	err := c.cfg.Blobs.Put(h, io.LimitReader(br, size))
	st, msg := statusOf(err)
	return writeFrame(bw, st, msg)
}

func (c *Cluster) serveBlobGet(bw *bufio.Writer, hdr []byte) error {
	h := string(hdr)
	if c.cfg.Blobs == nil || !blob.ValidHash(h) {
		return writeFrame(bw, stNotFound, []byte("no such blob"))
	}
	f, err := c.cfg.Blobs.Open(h)
	if err != nil {
		st, msg := statusOf(err)
		return writeFrame(bw, st, msg)
	}
	defer f.Close()
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(f.Size()))
	if err := writeFrame(bw, stOK, size[:]); err != nil {
		return err
	}
	_, err = io.Copy(bw, f)
	return err
}

// peerPool keeps a few open RPC connections per peer so forwarding a write
// costs a round trip, not a TCP (and TLS) handshake.
type peerPool struct {
	dial func(ctx context.Context, addr string) (net.Conn, error)
	mu   sync.Mutex
	idle map[string][]net.Conn
}

// Twenty SMTP sessions each push a body to every peer at once; keeping
// that many connections open spares a TLS handshake per message.
const maxIdlePerPeer = 32

func (p *peerPool) get(ctx context.Context, addr string) (net.Conn, error) {
	p.mu.Lock()
	if conns := p.idle[addr]; len(conns) > 0 {
		c := conns[len(conns)-1]
		p.idle[addr] = conns[:len(conns)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{protoRPC}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (p *peerPool) put(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[addr]) >= maxIdlePerPeer {
		c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], c)
}

func (p *peerPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, conns := range p.idle {
		for _, c := range conns {
			c.Close()
		}
	}
	p.idle = map[string][]net.Conn{}
}

// call runs one request on a pooled connection. body, when not nil, is
// streamed after the header; onOK reads a successful response's body.
func (p *peerPool) call(ctx context.Context, addr string, op byte, hdr []byte, body io.Reader, onOK func(msg []byte, r io.Reader) error) error {
	conn, err := p.get(ctx, addr)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if ok {
			p.put(addr, conn)
		} else {
			conn.Close()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(time.Minute))
	}
	bw := bufio.NewWriterSize(conn, 64<<10)
	if err := writeFrame(bw, op, hdr); err != nil {
		return err
	}
	if body != nil {
		if _, err := io.Copy(bw, body); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	limit := uint32(maxHeader)
	if op >= OpAppFirst {
		limit = maxAppResponse
	}
	st, msg, err := readFrameLimit(br, limit)
	if err != nil {
		return err
	}
	if st != stOK {
		// The connection is still in step: the error was a whole frame.
		ok = op != opBlobGet
		return errorOf(st, msg)
	}
	if onOK != nil {
		if err := onOK(msg, br); err != nil {
			return err
		}
	}
	if br.Buffered() > 0 {
		return nil
	}
	conn.SetDeadline(time.Time{})
	ok = true
	return nil
}

// OpAppFirst is the first operation number left to the application: the
// node's own peer requests (a search of every node's message log) travel
// over the cluster's authenticated connections without the cluster
// knowing what they mean.
const OpAppFirst byte = 100

// Call sends an application request to the node at addr (its Raft
// address) and returns its answer.
func (c *Cluster) Call(ctx context.Context, addr string, op byte, req []byte) ([]byte, error) {
	if op < OpAppFirst {
		return nil, fmt.Errorf("cluster: operation %d is reserved", op)
	}
	var out []byte
	err := c.pool.call(ctx, addr, op, req, nil, func(msg []byte, _ io.Reader) error {
		out = msg
		return nil
	})
	return out, err
}
