//go:build e2e

package e2e

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// applyDurationMetric is the agent's histogram of change seen -> applied
// (agent.Metrics.ApplyDuration): from the first cluster change an Apply
// picks up to the maps holding its result.
const applyDurationMetric = "kubectl_netpol_policy_apply_duration_seconds"

// applyHistogram is one agent's applyDurationMetric: cumulative counts per
// upper bound (ascending, +Inf last), and the sum and count of the samples.
type applyHistogram struct {
	le, cum    []float64
	sum, count float64
}

// readApplyHistogram reads applyDurationMetric from the agent on node.
func readApplyHistogram(b *testing.B, node framework.Node) applyHistogram {
	b.Helper()
	return parseApplyHistogram(agentMetrics(b, node))
}

// parseApplyHistogram takes applyDurationMetric out of agentMetrics' samples.
func parseApplyHistogram(m map[string]float64) applyHistogram {
	var h applyHistogram
	type bucket struct{ le, cum float64 }
	var bs []bucket
	for k, v := range m {
		le, ok := strings.CutPrefix(k, applyDurationMetric+`_bucket{le="`)
		if !ok {
			continue
		}
		bound, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{bound, v})
	}
	slices.SortFunc(bs, func(x, y bucket) int { return cmp.Compare(x.le, y.le) })
	for _, x := range bs {
		h.le, h.cum = append(h.le, x.le), append(h.cum, x.cum)
	}
	h.sum, h.count = m[applyDurationMetric+"_sum"], m[applyDurationMetric+"_count"]
	return h
}

// since is what h counted after earlier (the same agent, read before).
func (h applyHistogram) since(earlier applyHistogram) applyHistogram {
	d := applyHistogram{le: h.le, cum: slices.Clone(h.cum), sum: h.sum - earlier.sum, count: h.count - earlier.count}
	if slices.Equal(h.le, earlier.le) {
		for i := range d.cum {
			d.cum[i] -= earlier.cum[i]
		}
	}
	return d
}

// quantile estimates the q-quantile in seconds as Prometheus'
// histogram_quantile does: linearly inside the bucket holding it (the
// buckets double, so the estimate is within a factor of 2); NaN without
// samples, the highest finite bound when it falls in +Inf.
func (h applyHistogram) quantile(q float64) float64 {
	if len(h.cum) == 0 || h.cum[len(h.cum)-1] <= 0 {
		return math.NaN()
	}
	rank := q * h.cum[len(h.cum)-1]
	lower, below := 0.0, 0.0
	for i, c := range h.cum {
		if c >= rank && c > below {
			if math.IsInf(h.le[i], 1) {
				return lower
			}
			return lower + (h.le[i]-lower)*(rank-below)/(c-below)
		}
		lower, below = h.le[i], c
	}
	return lower
}

// mean is the mean sample in seconds (NaN without samples).
func (h applyHistogram) mean() float64 {
	if h.count <= 0 {
		return math.NaN()
	}
	return h.sum / h.count
}

// histogramSamples are applyDurationMetric's samples with cumulative
// counts for 1, 2 and 4 ms and +Inf.
func histogramSamples(cum [4]float64, sum float64) map[string]float64 {
	m := map[string]float64{applyDurationMetric + "_sum": sum, applyDurationMetric + "_count": cum[3], "kubectl_netpol_endpoints": 3}
	for i, le := range []string{"0.001", "0.002", "0.004", "+Inf"} {
		m[applyDurationMetric+`_bucket{le="`+le+`"}`] = cum[i]
	}
	return m
}

func TestApplyHistogramQuantile(t *testing.T) {
	m := histogramSamples([4]float64{1, 2, 10, 12}, 0.05)
	before := parseApplyHistogram(histogramSamples([4]float64{1, 1, 1, 1}, 0.0005))
	h := parseApplyHistogram(m).since(before)
	if want := []float64{0, 1, 9, 11}; !slices.Equal(h.cum, want) {
		t.Fatalf("cumulative counts after the first read %v, want %v", h.cum, want)
	}
	// 11 samples: 1 in (1, 2] ms, 8 in (2, 4] ms, 2 above 4 ms.
	for _, c := range []struct{ q, want float64 }{
		{0.05, 0.00155}, // rank 0.55 of the one sample in (1, 2] ms
		{0.5, 0.002 + 0.002*4.5/8},
		{0.99, 0.004}, // in +Inf: the highest finite bound
	} {
		if got := h.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := h.mean(); math.Abs(got-0.0495/11) > 1e-12 {
		t.Errorf("mean %v, want %v", got, 0.0495/11)
	}
	if !math.IsNaN(before.since(before).quantile(0.5)) {
		t.Errorf("no samples gave a quantile")
	}
}
