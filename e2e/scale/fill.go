package main

import (
	"context"
	"fmt"
	"time"

	"lifeline/e2e/kit"
)

// fillConfig describes how the spool is filled.
type fillConfig struct {
	Addrs    []string // SMTP addresses of the nodes; session i starts on Addrs[i%len]
	Messages int
	Size     int
	Sessions int
	Domain   string
	Progress func(accepted, failed int64)
}

// fillResult is what the fill produced.
type fillResult struct {
	Accepted int           `json:"accepted"`
	Failed   int           `json:"failed"`
	Retries  int           `json:"retries"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Rate     float64       `json:"msgs_per_second"`
	P50Ms    float64       `json:"p50_ms"`
	P99Ms    float64       `json:"p99_ms"`
	MaxMs    float64       `json:"max_ms"`
	// Replies counts every reply other than 250 by its text, and I/O
	// errors, so 5,000 identical 451s read as one line.
	Replies []kit.Count `json:"non_250_replies,omitempty"`
	IDs     []string    `json:"-"`
}

// fill sends cfg.Messages messages over cfg.Sessions parallel sessions. A
// 4xx reply or a broken connection sends the message again on the next
// node, up to 20 times.
func fill(ctx context.Context, cfg fillConfig) (*fillResult, error) {
	r, err := kit.Load(ctx, kit.LoadConfig{
		Addrs: cfg.Addrs, Sessions: cfg.Sessions, Messages: cfg.Messages, Size: cfg.Size,
		Sender: "scale@client.scale.invalid", Hello: "client.scale.invalid", RcptDomain: cfg.Domain,
		Attempts: 20, OpTimeout: time.Minute, Progress: cfg.Progress,
	})
	if err != nil {
		return nil, fmt.Errorf("filling the spool: %w", err)
	}
	return &fillResult{
		Accepted: r.Accepted, Failed: r.Failed, Retries: r.Retries, Duration: r.Duration, Seconds: r.Duration.Seconds(),
		Rate: r.Rate, P50Ms: kit.Ms(r.P50), P99Ms: kit.Ms(r.P99), MaxMs: kit.Ms(r.Max), Replies: r.ErrorKinds, IDs: r.IDs,
	}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
