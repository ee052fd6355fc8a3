// Package metrics exports one node's figures in the Prometheus format:
// counters the node feeds as things happen, and gauges read from the
// cluster and the spool when scraped. Each node has its own registry, so
// several nodes can run in one process.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lifeline/cluster"
	"lifeline/fsm"
)

// Source is what the scrape-time gauges read.
type Source interface {
	ClusterStatus() cluster.Status
	QueueStats() (fsm.QueueStats, error)
	BlobLag() int64
	Now() time.Time
}

// Metrics holds one node's registry and its counters.
type Metrics struct {
	reg         *prometheus.Registry
	smtpReplies *prometheus.CounterVec
	commitTime  prometheus.Histogram
	deliveries  *prometheus.CounterVec
}

// New registers everything for one node.
func New(src Source) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.smtpReplies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lifeline_smtp_replies_total",
		Help: "Final SMTP replies the MX gave, by reply code.",
	}, []string{"code"})
	m.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lifeline_raft_commit_seconds",
		Help:    "Time from proposing a command to its commit and application, as callers see it.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lifeline_delivery_outcomes_total",
		Help: "Outcomes of delivery attempts, per recipient.",
	}, []string{"outcome"})
	m.reg.MustRegister(m.smtpReplies, m.commitTime, m.deliveries, &scrape{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SMTPReply counts one reply code.
func (m *Metrics) SMTPReply(code int) {
	m.smtpReplies.WithLabelValues(strconv.Itoa(code)).Inc()
}

// Commit records the latency of one committed command.
func (m *Metrics) Commit(d time.Duration) { m.commitTime.Observe(d.Seconds()) }

// Delivery counts one recipient's outcome.
func (m *Metrics) Delivery(outcome string) { m.deliveries.WithLabelValues(outcome).Inc() }

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	descState    = prometheus.NewDesc("lifeline_raft_state", "1 for the Raft state this node is in.", []string{"state"}, nil)
	descTerm     = prometheus.NewDesc("lifeline_raft_term", "Current Raft term.", nil, nil)
	descCommit   = prometheus.NewDesc("lifeline_raft_commit_index", "Raft commit index.", nil, nil)
	descApplied  = prometheus.NewDesc("lifeline_raft_applied_index", "Index of the last entry the state store applied.", nil, nil)
	descVoters   = prometheus.NewDesc("lifeline_raft_voters", "Voters in the Raft configuration.", nil, nil)
	descContact  = prometheus.NewDesc("lifeline_raft_last_contact_seconds", "Seconds since this follower last heard from the leader.", nil, nil)
	descQueued   = prometheus.NewDesc("lifeline_queue_messages", "Messages spooled with a recipient in the domain.", []string{"domain"}, nil)
	descQueueAll = prometheus.NewDesc("lifeline_queue_messages_total", "Messages spooled.", nil, nil)
	descBytes    = prometheus.NewDesc("lifeline_queue_bytes", "Bytes spooled.", nil, nil)
	descOldest   = prometheus.NewDesc("lifeline_queue_oldest_seconds", "Age of the oldest spooled message.", nil, nil)
	descBlobLag  = prometheus.NewDesc("lifeline_blob_missing", "Spooled messages whose body this node does not hold yet.", nil, nil)
)

type scrape struct{ src Source }

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descVoters, descContact, descQueued, descQueueAll, descBytes, descOldest, descBlobLag} {
		ch <- d
	}
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	st := s.src.ClusterStatus()
	for _, state := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
		v := 0.0
		if st.State == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, state)
	}
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.AppliedIndex))
	voters := 0
	for _, sv := range st.Servers {
		if sv.Suffrage == "voter" {
			voters++
		}
	}
	ch <- prometheus.MustNewConstMetric(descVoters, prometheus.GaugeValue, float64(voters))
	if st.State == "Follower" && !st.LastContact.IsZero() {
		ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, s.src.Now().Sub(st.LastContact).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descBlobLag, prometheus.GaugeValue, float64(s.src.BlobLag()))
	q, err := s.src.QueueStats()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descQueueAll, prometheus.GaugeValue, float64(q.Messages))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(q.Bytes))
	oldest := 0.0
	if q.OldestReceived != 0 {
		oldest = s.src.Now().Sub(time.Unix(0, q.OldestReceived)).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, oldest)
	for d, n := range q.ByDomain {
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(n), d)
	}
}
