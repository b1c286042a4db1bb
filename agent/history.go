//go:build linux

package agent

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
)

// openHistory opens the node's history; a directory that cannot be used
// leaves the history in memory (said in status), never stops enforcement.
func openHistory(cfg Config) *history.Store {
	hc := history.Config{Node: cfg.NodeName, MemoryBudget: cfg.HistoryMemory, DiskBudget: cfg.HistoryDisk}
	if cfg.HistoryDir == "" {
		return history.NewStore(hc)
	}
	s, err := history.Open(nodeHistoryDir(cfg), hc)
	if err != nil {
		klog.ErrorS(err, "The connection history stays in memory only", "node", cfg.NodeName)
		return history.NewStore(hc)
	}
	if c := s.Coverage(); c.GetError() != "" {
		klog.ErrorS(errors.New(c.GetError()), "Connection history", "node", cfg.NodeName)
	} else {
		klog.InfoS("Connection history loaded", "node", cfg.NodeName, "dir", cfg.HistoryDir, "keys", c.GetKeys(), "records", c.GetRecords())
	}
	return s
}

// record adds a published flow to the history: a map update under a lock,
// in the reader's goroutine, after the flow went to the hub (the datapath
// never waits for user space; see BenchmarkHistoryRecord for the cost).
func (a *Agent) record(f *flowv1.Flow) {
	if a.history != nil {
		a.history.Record(f)
	}
}

// flushHistory writes the history every HistoryFlushEvery and once more when
// the agent stops (without a directory it only maintains it).
func (a *Agent) flushHistory(ctx context.Context) {
	every := a.cfg.HistoryFlushEvery
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.flushHistoryOnce()
			return
		case <-t.C:
			a.flushHistoryOnce()
		}
	}
}

// nodeHistoryDir is the node's own directory under HistoryDir: nodes that
// share a filesystem (test beds, some edge setups) never read each other's.
func nodeHistoryDir(cfg Config) string { return filepath.Join(cfg.HistoryDir, cfg.NodeName) }

func (a *Agent) flushHistoryOnce() {
	if a.cfg.HistoryDir == "" {
		a.history.Maintain() // in memory only: still within its budget
		return
	}
	if err := a.history.Flush(nodeHistoryDir(a.cfg)); err != nil {
		klog.ErrorS(err, "Writing the connection history", "node", a.cfg.NodeName, "dir", a.cfg.HistoryDir)
	}
}

// removeHistory removes the history directory on uninstall (its parent is
// the pod's hostPath mount point, left empty on the node).
func (a *Agent) removeHistory() error {
	if a.cfg.HistoryDir == "" {
		return nil
	}
	if err := os.RemoveAll(nodeHistoryDir(a.cfg)); err != nil {
		return err
	}
	// The last node out removes the directory (others' may still be there
	// on a shared filesystem: then it stays, not an error).
	_ = os.Remove(a.cfg.HistoryDir)
	return nil
}

// History returns the node's history (nil with NoHistory).
func (a *Agent) History() *history.Store { return a.history }

// observer is the agent's flow.v1.Observer: the hub's flows and status, and
// the history's RPCs.
type observer struct {
	*flow.Hub
	history *history.Store
	node    string
}

func (o *observer) History(req *flowv1.HistoryRequest, stream grpc.ServerStreamingServer[flowv1.HistoryBatch]) error {
	if o.history == nil {
		return status.Error(codes.FailedPrecondition, "this agent keeps no connection history (installed with --history=false)")
	}
	err := o.history.Serve(req, stream.Send)
	if errors.Is(err, history.ErrSchema) {
		return status.Error(codes.Unimplemented, err.Error())
	}
	return err
}

func (o *observer) RuleHits(context.Context, *flowv1.RuleHitsRequest) (*flowv1.RuleHitsResponse, error) {
	if o.history == nil {
		return nil, status.Error(codes.FailedPrecondition, "this agent keeps no connection history (installed with --history=false)")
	}
	hits, since := o.history.RuleHits()
	return &flowv1.RuleHitsResponse{Node: o.node, CountingSince: timestamppb.New(since), Hits: hits}, nil
}

var (
	ruleHitsDesc = prometheus.NewDesc(metricsNamespace+"_rule_hits_total",
		"Connections decided per policy rule on this node, kept across agent restarts (rule=\"\": an isolating policy's default deny).",
		[]string{"namespace", "policy", "direction", "rule", "verdict"}, nil)
	ruleLastHitDesc = prometheus.NewDesc(metricsNamespace+"_rule_last_hit_timestamp_seconds",
		"When the rule last decided a connection on this node (Unix time).",
		[]string{"namespace", "policy", "direction", "rule", "verdict"}, nil)
	historyRecordsDesc = prometheus.NewDesc(metricsNamespace+"_history_records",
		"Records (connection key x time bucket) in the connection history.", nil, nil)
	historyMemoryDesc = prometheus.NewDesc(metricsNamespace+"_history_memory_bytes",
		"Estimated memory of the connection history (its budget: --history-memory).", nil, nil)
	historyDiskDesc = prometheus.NewDesc(metricsNamespace+"_history_disk_bytes",
		"Size of the connection history file at the last flush.", nil, nil)
	historyLostDesc = prometheus.NewDesc(metricsNamespace+"_history_lost_total",
		"History lost to the budgets: dropped_records, dropped_connections, unrecorded_flows; and coarsened_records.", []string{"what"}, nil)
)

// historyCollector reads the history's counters at scrape time.
type historyCollector struct{ s *history.Store }

func (c historyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{ruleHitsDesc, ruleLastHitDesc, historyRecordsDesc, historyMemoryDesc, historyDiskDesc, historyLostDesc} {
		ch <- d
	}
}

func (c historyCollector) Collect(ch chan<- prometheus.Metric) {
	hits, _ := c.s.RuleHits()
	for _, h := range hits {
		r := h.GetRule()
		rule := ""
		if r.RuleIndex != nil {
			rule = strconv.Itoa(int(r.GetRuleIndex()))
		}
		lv := []string{r.GetNamespace(), r.GetName(), flow.DirectionName(r.GetDirection()), rule, flow.VerdictName(h.GetVerdict())}
		ch <- prometheus.MustNewConstMetric(ruleHitsDesc, prometheus.CounterValue, float64(h.GetHits()), lv...)
		ch <- prometheus.MustNewConstMetric(ruleLastHitDesc, prometheus.GaugeValue, float64(h.GetLastHit().AsTime().Unix()), lv...)
	}
	cov := c.s.Coverage()
	ch <- prometheus.MustNewConstMetric(historyRecordsDesc, prometheus.GaugeValue, float64(cov.GetRecords()))
	ch <- prometheus.MustNewConstMetric(historyMemoryDesc, prometheus.GaugeValue, float64(cov.GetMemoryBytes()))
	ch <- prometheus.MustNewConstMetric(historyDiskDesc, prometheus.GaugeValue, float64(cov.GetDiskBytes()))
	for what, v := range map[string]uint64{"dropped_records": cov.GetDroppedRecords(), "dropped_connections": cov.GetDroppedConnections(),
		"unrecorded_flows": cov.GetUnrecordedFlows(), "coarsened_records": cov.GetCoarsenedRecords()} {
		ch <- prometheus.MustNewConstMetric(historyLostDesc, prometheus.CounterValue, float64(v), what)
	}
}
