package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/kubectl-netpol/kubectl-netpol/internal/picture"
)

// matrixPorts names the matrix's ports: "80/TCP, 81/TCP".
func matrixPorts(m *Matrix) string {
	ports := make([]string, len(m.Ports))
	for k, t := range m.Ports {
		ports[k] = fmt.Sprintf("%d/%s", t.Port, t.Protocol)
	}
	return strings.Join(ports, ", ")
}

// writeMatrixPicture draws the matrix: a heat map (svg, png) whose cells
// count the ports allowed, or a DOT graph of the pairs that may connect.
func writeMatrixPicture(w io.Writer, format string, m *Matrix) error {
	title := "Reachability on " + matrixPorts(m)
	if format == picture.DOT {
		return picture.WriteGraph(w, format, matrixGraph(m, title))
	}
	h := picture.HeatMap{
		Title: title + " (rows: from, columns: to)",
		Rows:  m.Pods, Cols: m.Pods,
		Cells:  make([][]picture.Cell, len(m.Pods)),
		Legend: "cell: ports allowed / ports checked",
	}
	for i := range m.Pods {
		h.Cells[i] = make([]picture.Cell, len(m.Pods))
		for j := range m.Pods {
			c := picture.Cell{Total: len(m.Ports)}
			for _, t := range m.Ports {
				if t.Allowed[i][j] {
					c.Allowed++
				}
			}
			h.Cells[i][j] = c
		}
	}
	return picture.WriteHeatMap(w, format, h)
}

// matrixGraph is the pods (grouped by namespace) and an edge for each pair
// that may connect on some port, labelled with those ports (MIXED when
// others are denied). A pod's path to itself is left out.
func matrixGraph(m *Matrix, title string) picture.Graph {
	g := picture.Graph{Title: title, Legend: "an edge: the source may connect on the ports named; no edge: denied on every port"}
	for _, p := range m.Pods {
		ns, name, _ := strings.Cut(p, "/")
		g.Nodes = append(g.Nodes, picture.Node{ID: p, Group: ns, Label: name})
	}
	for i := range m.Pods {
		for j := range m.Pods {
			if i == j {
				continue
			}
			var ok []string
			for _, t := range m.Ports {
				if t.Allowed[i][j] {
					ok = append(ok, fmt.Sprintf("%d/%s", t.Port, t.Protocol))
				}
			}
			if len(ok) == 0 {
				continue
			}
			v, label := "ALLOWED", "ALLOWED "
			if len(ok) < len(m.Ports) {
				v, label = "MIXED", "ALLOWED only "
			}
			g.Edges = append(g.Edges, picture.Edge{From: m.Pods[i], To: m.Pods[j], Verdict: v, Label: label + strings.Join(ok, ",")})
		}
	}
	return g
}
