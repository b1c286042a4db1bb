package picture

import (
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

// HeatMap is a grid of cells: rows are sources, columns destinations.
type HeatMap struct {
	Title      string
	Rows, Cols []string
	// Cells[i][j] is row i, column j.
	Cells [][]Cell
	// Legend explains the cells' text, e.g. "ports allowed / ports".
	Legend string
}

// Cell is one square: Allowed of Total (Total 0: nothing to judge), drawn
// green when all are allowed, red when none, amber in between, and
// labelled "Allowed/Total" so it reads without colour.
type Cell struct{ Allowed, Total int }

func (c Cell) fill() color.Color {
	switch {
	case c.Total == 0:
		return emptyFill
	case c.Allowed == c.Total:
		return allowedFill
	case c.Allowed == 0:
		return deniedFill
	}
	return mixedFill
}

// WriteHeatMap draws h as svg or png.
func WriteHeatMap(w io.Writer, format string, h HeatMap) error {
	lab := textStyle(labelSize, false)
	rowW, colH := vg.Length(0), vg.Length(0)
	for _, r := range h.Rows {
		rowW = max(rowW, lab.Width(r))
	}
	for _, c := range h.Cols {
		colH = max(colH, lab.Width(c))
	}
	title := textStyle(titleSize, true)
	legendH := 3 * labelSize
	gridW, gridH := cellSize*vg.Length(len(h.Cols)), cellSize*vg.Length(len(h.Rows))
	width := max(margin*2+rowW+labelPad+gridW, title.Width(h.Title)+2*margin, lab.Width(h.Legend)+2*margin)
	height := margin*2 + titleSize*2 + colH + labelPad + gridH + legendH
	cw, dc, err := canvas(format, width, height)
	if err != nil {
		return err
	}
	// vg's origin is the lower left: lay out from the top down.
	top := height - margin
	title.YAlign = text.YTop
	dc.FillText(title, vg.Point{X: margin, Y: top}, h.Title)
	gridTop := top - titleSize*2 - colH - labelPad
	x0 := margin + rowW + labelPad

	col := lab
	col.Rotation = math.Pi / 2
	col.XAlign, col.YAlign = text.XLeft, text.YCenter
	for j, c := range h.Cols {
		dc.FillText(col, vg.Point{X: x0 + cellSize*vg.Length(j) + cellSize/2, Y: gridTop + labelPad}, c)
	}
	row := lab
	row.XAlign, row.YAlign = text.XRight, text.YCenter
	cellText := textStyle(labelSize-1, false)
	cellText.XAlign, cellText.YAlign = text.XCenter, text.YCenter
	for i, r := range h.Rows {
		y := gridTop - cellSize*vg.Length(i+1)
		dc.FillText(row, vg.Point{X: x0 - labelPad, Y: y + cellSize/2}, r)
		for j := range h.Cols {
			c := h.Cells[i][j]
			x := x0 + cellSize*vg.Length(j)
			dc.FillPolygon(c.fill(), rect(x, y, cellSize, cellSize))
			dc.StrokeLines(line(white, 1, false), append(rect(x, y, cellSize, cellSize), vg.Point{X: x, Y: y}))
			if c.Total > 0 {
				dc.FillText(cellText, vg.Point{X: x + cellSize/2, Y: y + cellSize/2}, strconv.Itoa(c.Allowed)+"/"+strconv.Itoa(c.Total))
			}
		}
	}
	leg := lab
	leg.YAlign = text.YTop
	ly := gridTop - gridH - labelSize
	lx := margin
	for _, k := range []struct {
		fill color.Color
		name string
	}{{allowedFill, "all allowed"}, {mixedFill, "some allowed"}, {deniedFill, "all denied"}} {
		dc.FillPolygon(k.fill, rect(lx, ly-labelSize, labelSize, labelSize))
		dc.FillText(leg, vg.Point{X: lx + labelSize + 3, Y: ly}, k.name)
		lx += labelSize + 3 + lab.Width(k.name) + 12
	}
	dc.FillText(leg, vg.Point{X: lx, Y: ly}, h.Legend)
	return writeTo(w, cw)
}
