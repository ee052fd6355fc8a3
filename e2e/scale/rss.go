package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"lifeline/e2e/kit"
)

// memSample is one reading of /proc/PID/status, in bytes.
type memSample struct {
	RSS     int64 // VmRSS: what the requirement bounds
	Anon    int64 // RssAnon: the Go heap and stacks
	File    int64 // RssFile: mapped files, such as bbolt's mmap of state.db
	HWM     int64 // VmHWM: the kernel's own peak of VmRSS
	Threads int
}

func readMem(pid int) (memSample, error) {
	var s memSample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSS = n << 10
		case "RssAnon":
			s.Anon = n << 10
		case "RssFile":
			s.File = n << 10
		case "VmHWM":
			s.HWM = n << 10
		case "Threads":
			s.Threads = int(n)
		}
	}
	return s, sc.Err()
}

// peak is the largest reading of one node in one phase.
type peak struct {
	Max     memSample
	At      time.Time
	Samples int
}

// sampler reads the memory of every node once a second and keeps, per
// node and per phase, the sample with the largest VmRSS.
type sampler struct {
	mu    sync.Mutex
	phase string
	peaks map[string]map[string]*peak // node -> phase -> peak
	hwm   map[string]int64
	last  map[string]memSample
	over  map[string]bool // already said that it crossed the limit
	nodes func() []*kit.Node
	limit int64
	logf  func(string, ...any)
}

func newSampler(nodes func() []*kit.Node, limit int64, logf func(string, ...any)) *sampler {
	return &sampler{phase: "start", peaks: map[string]map[string]*peak{}, hwm: map[string]int64{},
		last: map[string]memSample{}, over: map[string]bool{}, nodes: nodes, limit: limit, logf: logf}
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase = p
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample() {
	for _, n := range s.nodes() {
		r := n.Current()
		if r == nil || !n.Running() {
			continue
		}
		m, err := readMem(r.PID())
		if err != nil || m.RSS == 0 {
			continue
		}
		s.mu.Lock()
		s.last[n.ID] = m
		// VmHWM catches a peak between two samples.
		s.hwm[n.ID] = max(s.hwm[n.ID], m.HWM)
		byPhase := s.peaks[n.ID]
		if byPhase == nil {
			byPhase = map[string]*peak{}
			s.peaks[n.ID] = byPhase
		}
		p := byPhase[s.phase]
		if p == nil {
			p = &peak{}
			byPhase[s.phase] = p
		}
		p.Samples++
		if m.RSS > p.Max.RSS {
			p.Max, p.At = m, time.Now()
		}
		first := m.RSS >= s.limit && !s.over[n.ID]
		s.over[n.ID] = s.over[n.ID] || first
		phase := s.phase
		s.mu.Unlock()
		if first {
			s.logf("%s: RSS %.0f MiB (anon %.0f, file %.0f) crossed the limit of %.0f MiB during %s",
				n.ID, mib(m.RSS), mib(m.Anon), mib(m.File), mib(s.limit), phase)
		}
	}
}

func (s *sampler) current(id string) memSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[id]
}

// overall is a node's largest sample over every phase, the phase it was
// in, the number of samples, and the kernel's high-water mark.
func (s *sampler) overall(id string) (best peak, phase string, samples int, hwm int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ph, p := range s.peaks[id] {
		samples += p.Samples
		if p.Max.RSS > best.Max.RSS {
			best, phase = *p, ph
		}
	}
	return best, phase, samples, s.hwm[id]
}

func (s *sampler) currentPhase() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase
}

// leaderEvent is a new Raft term or leader as a founding node reports it.
type leaderEvent struct {
	At     string  `json:"at"`
	Second float64 `json:"second"` // since the cluster was started
	Phase  string  `json:"phase"`
	Term   uint64  `json:"term"`
	Leader string  `json:"leader"`
}

// watchLeader asks a founding node for the term and leader every second
// and records every change: an election during the run says a lot about
// the figures around it.
func watchLeader(ctx context.Context, founders func() []*kit.Node, s *sampler, start time.Time, logf func(string, ...any), out *[]leaderEvent, mu *sync.Mutex) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var term uint64
	leader := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range founders() {
			if !n.Running() {
				continue
			}
			st, err := n.APIStatus(ctx)
			if err != nil {
				continue
			}
			if st.Cluster.Term != term || st.Cluster.LeaderID != leader {
				term, leader = st.Cluster.Term, st.Cluster.LeaderID
				ev := leaderEvent{At: time.Now().Format("15:04:05"), Second: time.Since(start).Seconds(), Phase: s.currentPhase(), Term: term, Leader: leader}
				mu.Lock()
				*out = append(*out, ev)
				first := len(*out) == 1
				mu.Unlock()
				if !first {
					logf("leader: term %d, leader %q (seen by %s during %s)", term, leader, n.ID, ev.Phase)
				}
			}
			break
		}
	}
}

func (s *sampler) inPhase(id, phase string) (memSample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peaks[id][phase]
	if p == nil {
		return memSample{}, false
	}
	return p.Max, true
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
