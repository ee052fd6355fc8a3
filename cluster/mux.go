package cluster

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Every connection to the Raft address starts with one byte that names the
// protocol, so Raft, write forwarding and blob replication share one port
// and, with a cluster key, one TLS configuration.
const (
	protoRaft byte = 'R'
	protoRPC  byte = 'C'
)

// mux accepts connections on the cluster address and hands each one to the
// protocol its first byte names.
type mux struct {
	ln      net.Listener
	raftCh  chan net.Conn
	rpc     func(net.Conn)
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	timeout time.Duration
}

func newMux(ln net.Listener, rpc func(net.Conn)) *mux {
	m := &mux{ln: ln, raftCh: make(chan net.Conn, 16), rpc: rpc, closed: make(chan struct{}), timeout: 5 * time.Second}
	m.wg.Add(1)
	go m.serve()
	return m
}

func (m *mux) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(m.timeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		select {
		case m.raftCh <- c:
		case <-m.closed:
			c.Close()
		}
	case protoRPC:
		if m.rpc == nil {
			c.Close()
			return
		}
		m.rpc(c)
	default:
		c.Close()
	}
}

func (m *mux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		err = m.ln.Close()
	})
	return err
}

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	m         *mux
	advertise net.Addr
	dial      func(addr string, timeout time.Duration) (net.Conn, error)
}

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.closed:
		return nil, errors.New("cluster: listener closed")
	}
}

func (l *raftLayer) Close() error   { return l.m.Close() }
func (l *raftLayer) Addr() net.Addr { return l.advertise }

func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.dial(string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{protoRaft}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
