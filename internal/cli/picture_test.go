package cli

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"strings"
	"testing"
)

// svgStructure is the SVG's texts in document order and how many shapes
// (paths) it draws: what the picture says, not its pixels.
func svgStructure(t *testing.T, svg string) string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var texts []string
	paths, inText := 0, false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			switch el.Name.Local {
			case "text":
				inText = true
			case "path":
				paths++
			}
		case xml.EndElement:
			if el.Name.Local == "text" {
				inText = false
			}
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		}
	}
	if paths == 0 {
		t.Fatal("the SVG draws nothing")
	}
	return "texts:\n" + strings.Join(texts, "\n") + "\n"
}

// checkPNG decodes the PNG and checks it is at least w×h pixels.
func checkPNG(t *testing.T, data string, w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader([]byte(data)))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < w || b.Dy() < h {
		t.Fatalf("PNG is %dx%d, want at least %dx%d to be legible", b.Dx(), b.Dy(), w, h)
	}
}

// TestMatrixPictures: the heat map names every pod on both axes and
// counts the allowed ports in each cell; the DOT graph has an edge for each
// pair allowed on some port, labelled with the ports.
func TestMatrixPictures(t *testing.T) {
	args := []string{"matrix", "-f", example, "-A", "--ports", "3306,80"}
	out, _, err := run(t, offlineFactory(t), "", append(args, "-o", "dot")...)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix_dot", out)
	for _, want := range []string{`"db/web-0" -> "db/mysql-0" [label="ALLOWED only 3306/TCP"`, `subgraph cluster_1 {`, `label="web";`} {
		if !strings.Contains(out, want) {
			t.Errorf("dot lacks %q", want)
		}
	}
	if strings.Contains(out, `"db/other" -> "db/mysql-0"`) {
		t.Error("db/other may not reach db/mysql-0 on any port: no edge")
	}

	out, _, err = run(t, offlineFactory(t), "", append(args, "-o", "svg")...)
	if err != nil {
		t.Fatal(err)
	}
	s := svgStructure(t, out)
	golden(t, "matrix_svg", s)
	if strings.Count(s, "\n0/2\n") != 2 || strings.Count(s, "\n1/2\n") != 1 {
		t.Errorf("cells: want two 0/2 and one 1/2:\n%s", s)
	}

	out, _, err = run(t, offlineFactory(t), "", append(args, "-o", "png")...)
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, out, 600, 400)
}

// TestWatchMapPictures: --map draws the capture's workloads grouped by
// namespace and every observed connection labelled by verdict.
func TestWatchMapPictures(t *testing.T) {
	out, err := runWatch(t, false, nil, "--input-file", sampleCapture, "--map")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "watch_map_dot", out)
	for _, want := range []string{
		`"monitoring/prometheus" -> "shop/api" [label="DENIED 91", color="#c62828", fontcolor="#c62828", style="dashed"]`,
		`"shop/web" -> "shop/api" [label="ALLOWED 101"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dot lacks %q", want)
		}
	}
	out, err = runWatch(t, false, nil, "--input-file", sampleCapture, "--map", "-o", "svg", "--verdict", "denied")
	if err != nil {
		t.Fatal(err)
	}
	s := svgStructure(t, out)
	golden(t, "watch_map_svg", s)
	if strings.Contains(s, "ALLOWED 101") || !strings.Contains(s, "DENIED 91") {
		t.Errorf("the denied-only map should label only drops:\n%s", s)
	}
	out, err = runWatch(t, false, nil, "--input-file", sampleCapture, "--map", "-o", "png")
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, out, 1000, 700)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--map", "-o", "json"}, `--map draws a picture: use -o dot, svg or png, not "json"`},
		{[]string{"-o", "svg"}, "-o svg draws the workload map: add --map"},
		{[]string{"--map", "--namespace", "nope"}, "no flows to draw"},
	} {
		_, err := runWatch(t, false, nil, append([]string{"--input-file", sampleCapture}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want %q, got %v", tc.args, tc.want, err)
		}
	}
}
