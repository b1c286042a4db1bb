package picture

import (
	"cmp"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/kubectl-netpol/kubectl-netpol/internal/flowmap"
)

// Graph is nodes grouped (by namespace) and labelled edges between them.
type Graph struct {
	Title string
	Nodes []Node
	Edges []Edge
	// Legend explains the edge labels' numbers, e.g. "connections observed".
	Legend string
}

// Node is one workload (or pod) in its group.
type Node struct{ ID, Group, Label string }

// Edge is a labelled connection; Verdict (ALLOWED, DENIED or MIXED) picks
// its colour and dash, Label says it in words.
type Edge struct{ From, To, Verdict, Label string }

// FromFlowMap turns a workload map into a Graph: a node per workload in its
// namespace, an edge per observed pair labelled "ALLOWED 12" or "DENIED 3".
func FromFlowMap(g *flowmap.Graph, title string) Graph {
	out := Graph{Title: title, Legend: "edge labels: connections observed, by verdict"}
	for _, ns := range g.Namespaces() {
		for _, w := range g.Workloads(ns) {
			out.Nodes = append(out.Nodes, Node{ID: w, Group: ns, Label: strings.TrimPrefix(w, ns+"/")})
		}
	}
	for _, e := range g.Edges() {
		out.Edges = append(out.Edges, Edge{From: e.From, To: e.To, Verdict: e.Count.Verdict(), Label: e.Count.Label()})
	}
	return out
}

// WriteGraph writes g as dot, svg or png.
func WriteGraph(w io.Writer, format string, g Graph) error {
	if format == DOT {
		return writeDOT(w, g)
	}
	return drawGraph(w, format, g)
}

func edgeStyle(verdict string) (c color.Color, dot string) {
	switch verdict {
	case "DENIED":
		return deniedLine, "dashed"
	case "MIXED":
		return mixedLine, "bold,dashed"
	}
	return allowedLine, "solid"
}

func hex(c color.Color) string {
	r, g, b, _ := c.RGBA()
	return fmt.Sprintf("#%02x%02x%02x", r>>8, g>>8, b>>8)
}

// quote is a DOT string literal.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// writeDOT writes g for Graphviz: one cluster per group, edges coloured
// and dashed by verdict and labelled in words.
func writeDOT(w io.Writer, g Graph) error {
	var b strings.Builder
	b.WriteString("digraph netpol {\n")
	fmt.Fprintf(&b, "  label=%s;\n  labelloc=t;\n  rankdir=LR;\n  fontname=\"Helvetica\";\n", quote(g.Title))
	b.WriteString("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f5f5f5\", fontname=\"Helvetica\"];\n")
	b.WriteString("  edge [fontname=\"Helvetica\", fontsize=10];\n")
	groups := groupNodes(g.Nodes)
	for i, grp := range groups {
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n    style=rounded;\n    color=\"#757575\";\n", i, quote(grp.name))
		for _, n := range grp.nodes {
			fmt.Fprintf(&b, "    %s [label=%s];\n", quote(n.ID), quote(n.Label))
		}
		b.WriteString("  }\n")
	}
	for _, e := range g.Edges {
		c, style := edgeStyle(e.Verdict)
		fmt.Fprintf(&b, "  %s -> %s [label=%s, color=%s, fontcolor=%s, style=%s];\n",
			quote(e.From), quote(e.To), quote(e.Label), quote(hex(c)), quote(hex(c)), quote(style))
	}
	if g.Legend != "" {
		fmt.Fprintf(&b, "  legend [shape=plaintext, style=\"\", label=%s];\n", quote("solid: ALLOWED · dashed: DENIED · bold dashed: MIXED\n"+g.Legend))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type group struct {
	name  string
	nodes []Node
}

func groupNodes(nodes []Node) []group {
	var out []group
	for _, n := range nodes {
		i := slices.IndexFunc(out, func(g group) bool { return g.name == n.Group })
		if i < 0 {
			out = append(out, group{name: n.Group})
			i = len(out) - 1
		}
		out[i].nodes = append(out[i].nodes, n)
	}
	return out
}

// line is a line style: colour, width, dashed or not.
func line(c color.Color, width vg.Length, dashed bool) draw.LineStyle {
	ls := draw.LineStyle{Color: c, Width: width}
	if dashed {
		ls.Dashes = []vg.Length{5, 3}
	}
	return ls
}

// placed is a node's box.
type placed struct{ x, y, w, h vg.Length }

// drawGraph lays the groups out in columns by rank (a group whose
// workloads only call others is left of those it calls) and draws edges
// as straight arrows from the right side of the source box to the left of
// the destination's, labelled at their middle on a white backing.
func drawGraph(w io.Writer, format string, g Graph) error {
	groups := groupNodes(g.Nodes)
	groupOf := map[string]int{}
	for gi, grp := range groups {
		for _, n := range grp.nodes {
			groupOf[n.ID] = gi
		}
	}
	rank := rankGroups(len(groups), g.Edges, groupOf)
	lab := textStyle(9, false)
	head := textStyle(10, true)
	// Column widths and heights.
	ncol := 0
	for _, r := range rank {
		ncol = max(ncol, r+1)
	}
	colW := make([]vg.Length, ncol)
	colH := make([]vg.Length, ncol)
	groupW := make([]vg.Length, len(groups))
	for gi, grp := range groups {
		gw := head.Width(grp.name) + 2*groupPad
		for _, n := range grp.nodes {
			gw = max(gw, lab.Width(n.Label)+4*groupPad)
		}
		groupW[gi] = gw
		colW[rank[gi]] = max(colW[rank[gi]], gw)
		colH[rank[gi]] += groupHeight(len(grp.nodes)) + groupGap
	}
	title := textStyle(13, true)
	top := margin + 2*13
	width := margin * 2
	for _, cw := range colW {
		width += cw + colGap
	}
	width = max(width-colGap, title.Width(g.Title)+2*margin, 300)
	height := top + slices.Max(append(colH, 0)) + margin + 3*labelSize
	cw, dc, err := canvas(format, width, height)
	if err != nil {
		return err
	}
	title.YAlign = text.YTop
	dc.FillText(title, vg.Point{X: margin, Y: height - margin}, g.Title)

	boxes := map[string]placed{}
	colX := make([]vg.Length, ncol)
	x := margin
	for c := range ncol {
		colX[c] = x
		x += colW[c] + colGap
	}
	colY := make([]vg.Length, ncol) // next free y from the top, per column
	head.YAlign = text.YTop
	lab.XAlign, lab.YAlign = text.XCenter, text.YCenter
	for gi, grp := range groups {
		c := rank[gi]
		gh := groupHeight(len(grp.nodes))
		gx, gy := colX[c], height-top-colY[c]-gh // lower left
		colY[c] += gh + groupGap
		dc.FillPolygon(boxFill, rect(gx, gy, colW[c], gh))
		dc.StrokeLines(line(boxLine, 1, false), append(rect(gx, gy, colW[c], gh), vg.Point{X: gx, Y: gy}))
		dc.FillText(head, vg.Point{X: gx + groupPad, Y: gy + gh - groupPad/2}, grp.name)
		for i, n := range grp.nodes {
			ny := gy + gh - groupPad - 14 - vg.Length(i+1)*(nodeH+nodeGap) + nodeGap
			nb := placed{x: gx + groupPad, y: ny, w: colW[c] - 2*groupPad, h: nodeH}
			boxes[n.ID] = nb
			dc.FillPolygon(white, rect(nb.x, nb.y, nb.w, nb.h))
			dc.StrokeLines(line(boxLine, 0.8, false), append(rect(nb.x, nb.y, nb.w, nb.h), vg.Point{X: nb.x, Y: nb.y}))
			dc.FillText(lab, vg.Point{X: nb.x + nb.w/2, Y: nb.y + nb.h/2}, n.Label)
		}
	}
	var labels []placed // edge labels drawn so far, kept apart
	elab := textStyle(8, false)
	elab.XAlign, elab.YAlign = text.XCenter, text.YCenter
	for _, e := range g.Edges {
		a, okA := boxes[e.From]
		b, okB := boxes[e.To]
		if !okA || !okB {
			continue
		}
		c, style := edgeStyle(e.Verdict)
		from := vg.Point{X: a.x + a.w, Y: a.y + a.h/2}
		to := vg.Point{X: b.x, Y: b.y + b.h/2}
		if b.x <= a.x { // same column or leftwards: leave from the left side
			from.X = a.x
			if b.x == a.x {
				to.X = b.x // loop around on the left
			}
		}
		pts := []vg.Point{from, to}
		if from.X == to.X {
			bend := from.X - 30
			pts = []vg.Point{from, {X: bend, Y: from.Y}, {X: bend, Y: to.Y}, to}
		}
		dc.StrokeLines(line(c, 1.4, style != "solid"), pts)
		arrowHead(dc, c, pts[len(pts)-2], pts[len(pts)-1])
		lw, lh := elab.Width(e.Label)+4, vg.Length(10)
		mid := placeLabel(pts, lw, lh, &labels)
		dc.FillPolygon(white, rect(mid.X-lw/2, mid.Y-lh/2, lw, lh))
		elab.Color = c
		dc.FillText(elab, mid, e.Label)
	}
	leg := textStyle(labelSize, false)
	leg.YAlign = text.YTop
	ly := margin + 2*labelSize
	lx := margin
	for _, v := range []string{"ALLOWED", "DENIED", "MIXED"} {
		c, style := edgeStyle(v)
		dc.StrokeLines(line(c, 1.4, style != "solid"), []vg.Point{{X: lx, Y: ly - labelSize/2}, {X: lx + 24, Y: ly - labelSize/2}})
		dc.FillText(leg, vg.Point{X: lx + 28, Y: ly}, v)
		lx += 28 + leg.Width(v) + 14
	}
	dc.FillText(leg, vg.Point{X: lx, Y: ly}, g.Legend)
	return writeTo(w, cw)
}

// placeLabel picks where on the polyline pts an edge's label of w×h goes:
// the middle, or else the first point further along either way that does
// not overlap a label already placed (then the middle anyway).
func placeLabel(pts []vg.Point, w, h vg.Length, placedLabels *[]placed) vg.Point {
	var total vg.Length
	for i := 1; i < len(pts); i++ {
		total += vg.Length(math.Hypot(float64(pts[i].X-pts[i-1].X), float64(pts[i].Y-pts[i-1].Y)))
	}
	at := func(t float64) vg.Point {
		d := vg.Length(t) * total
		for i := 1; i < len(pts); i++ {
			seg := vg.Length(math.Hypot(float64(pts[i].X-pts[i-1].X), float64(pts[i].Y-pts[i-1].Y)))
			if d <= seg && seg > 0 {
				f := d / seg
				return vg.Point{X: pts[i-1].X + (pts[i].X-pts[i-1].X)*f, Y: pts[i-1].Y + (pts[i].Y-pts[i-1].Y)*f}
			}
			d -= seg
		}
		return pts[len(pts)-1]
	}
	overlaps := func(p vg.Point) bool {
		for _, o := range *placedLabels {
			if p.X-w/2 < o.x+o.w && o.x < p.X+w/2 && p.Y-h/2 < o.y+o.h && o.y < p.Y+h/2 {
				return true
			}
		}
		return false
	}
	best := at(0.5)
	for _, t := range []float64{0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.15, 0.85} {
		if p := at(t); !overlaps(p) {
			best = p
			break
		}
	}
	*placedLabels = append(*placedLabels, placed{x: best.X - w/2, y: best.Y - h/2, w: w, h: h})
	return best
}

func groupHeight(n int) vg.Length {
	return groupPad*2 + 14 + vg.Length(n)*(nodeH+nodeGap)
}

func arrowHead(dc draw.Canvas, c color.Color, from, to vg.Point) {
	dx, dy := float64(to.X-from.X), float64(to.Y-from.Y)
	l := math.Hypot(dx, dy)
	if l == 0 {
		return
	}
	ux, uy := dx/l, dy/l
	const size = 7
	back := vg.Point{X: to.X - vg.Length(ux*size), Y: to.Y - vg.Length(uy*size)}
	px, py := vg.Length(-uy*size/2), vg.Length(ux*size/2)
	dc.FillPolygon(c, []vg.Point{to, {X: back.X + px, Y: back.Y + py}, {X: back.X - px, Y: back.Y - py}})
}

// rankGroups gives each group a column: 0 for groups nothing else calls,
// then one more than the highest-ranked caller, cycles cut at the number of
// groups (a longest-path layering, as Graphviz's dot does first).
func rankGroups(n int, edges []Edge, groupOf map[string]int) []int {
	rank := make([]int, n)
	type ge struct{ a, b int }
	var ges []ge
	for _, e := range edges {
		a, b := groupOf[e.From], groupOf[e.To]
		if a != b && !slices.Contains(ges, ge{a, b}) {
			ges = append(ges, ge{a, b})
		}
	}
	slices.SortFunc(ges, func(x, y ge) int { return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b)) })
	limit := min(n-1, 4) // at most five columns, so the picture stays wide, not endless
	for range n {
		changed := false
		for _, e := range ges {
			if r := min(rank[e.a]+1, limit); r > rank[e.b] {
				rank[e.b] = r
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	return rank
}
