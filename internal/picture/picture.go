// Package picture draws the pictures the CLI shares: a reachability heat
// map (`matrix -o svg|png`) and a graph of workloads and their connections
// (`watch --map -o svg|png|dot`, `matrix -o dot`), labelled so they read
// when pasted into a pull request, and not by colour alone (edges say
// ALLOWED/DENIED and are solid or dashed; cells carry their counts).
//
// SVG and PNG are drawn with gonum/plot's vector graphics (vg: its SVG and
// raster back ends and its bundled Liberation fonts, pure Go, so the CLI
// still cross-builds for every OS); DOT is written as text for Graphviz,
// which lays out large graphs better than the simple layered layout here.
package picture

import (
	"fmt"
	"image/color"
	"io"

	"sync"

	"codeberg.org/go-fonts/liberation/liberationsansbold"
	"codeberg.org/go-fonts/liberation/liberationsansregular"
	xfont "golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Formats are the picture formats; DOT only for graphs.
const (
	SVG = "svg"
	PNG = "png"
	DOT = "dot"
)

// IsFormat reports whether format is svg, png or dot.
func IsFormat(format string) bool { return format == SVG || format == PNG || format == DOT }

// Colours: green allowed, red denied, amber both; light fills so the black
// labels on them stay legible.
var (
	allowedLine = color.RGBA{0x2e, 0x7d, 0x32, 0xff}
	deniedLine  = color.RGBA{0xc6, 0x28, 0x28, 0xff}
	mixedLine   = color.RGBA{0xef, 0x6c, 0x00, 0xff}
	allowedFill = color.RGBA{0xa5, 0xd6, 0xa7, 0xff}
	deniedFill  = color.RGBA{0xef, 0x9a, 0x9a, 0xff}
	mixedFill   = color.RGBA{0xff, 0xe0, 0x82, 0xff}
	emptyFill   = color.RGBA{0xee, 0xee, 0xee, 0xff}
	boxFill     = color.RGBA{0xf5, 0xf5, 0xf5, 0xff}
	boxLine     = color.RGBA{0x75, 0x75, 0x75, 0xff}
	black       = color.Black
	white       = color.White
)

// fonts is Liberation Sans, regular and bold: the two faces the pictures
// use. (gonum/plot's root package would register all twelve Liberation
// faces and its PDF, EPS and TeX back ends: megabytes the CLI does not need.)
var fonts = sync.OnceValue(func() *font.Cache {
	var coll font.Collection
	for _, f := range []struct {
		weight xfont.Weight
		ttf    []byte
	}{{xfont.WeightNormal, liberationsansregular.TTF}, {xfont.WeightBold, liberationsansbold.TTF}} {
		face, err := opentype.Parse(f.ttf)
		if err != nil {
			panic(fmt.Sprintf("picture: the bundled Liberation Sans does not parse: %v", err))
		}
		coll = append(coll, font.Face{Font: font.Font{Typeface: "Liberation", Variant: "Sans", Weight: f.weight}, Face: face})
	}
	return font.NewCache(coll)
})

// textStyle is the pictures' font at size pt.
func textStyle(pt vg.Length, bold bool) text.Style {
	f := font.Font{Typeface: "Liberation", Variant: "Sans", Size: pt}
	if bold {
		f.Weight = xfont.WeightBold
	}
	return text.Style{Color: black, Font: f, Handler: text.Plain{Fonts: fonts()}}
}

// canvas returns a w×h canvas of format (svg or png) with a white background.
func canvas(format string, w, h vg.Length) (vg.CanvasWriterTo, draw.Canvas, error) {
	if format != SVG && format != PNG {
		return nil, draw.Canvas{}, fmt.Errorf("unknown picture format %q: use svg or png", format)
	}
	var cw vg.CanvasWriterTo = vgsvg.New(w, h)
	if format == PNG {
		// Twice the screen's 96 dpi: crisp when a review zooms in.
		cw = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(2*96))}
	}
	dc := draw.New(cw)
	dc.FillPolygon(white, rect(0, 0, w, h))
	return cw, dc, nil
}

// rect is the corners of an axis-aligned rectangle (x, y its lower left).
func rect(x, y, w, h vg.Length) []vg.Point {
	return []vg.Point{{X: x, Y: y}, {X: x + w, Y: y}, {X: x + w, Y: y + h}, {X: x, Y: y + h}}
}

func writeTo(w io.Writer, cw vg.CanvasWriterTo) error {
	_, err := cw.WriteTo(w)
	return err
}

// Geometry, in points: the heat map's cells and text, the graph's boxes.
const (
	cellSize  = vg.Length(26)
	labelPad  = vg.Length(6)
	margin    = vg.Length(14)
	titleSize = vg.Length(13)
	labelSize = vg.Length(9)
	nodeH     = vg.Length(20)
	nodeGap   = vg.Length(8)
	groupPad  = vg.Length(8)
	groupGap  = vg.Length(18)
	colGap    = vg.Length(150) // room for edge labels between columns
)
