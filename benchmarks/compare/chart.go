package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// point is the target's record count at a time since the mirror process started.
type point struct {
	seconds float64
	records int64
}

// colorOf is a contender's colour in the charts: blue for kmirror, red for MirrorMaker 2,
// exactly-once in a lighter shade, green for the bare franz-go mirror, purple for the bare
// sarama one, grey for any other.
func colorOf(name string) color.Color {
	switch name {
	case "kmirror":
		return color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	case "kmirror-eos":
		return color.RGBA{R: 0x6b, G: 0xae, B: 0xd6, A: 0xff}
	case "mirrormaker2":
		return color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	case "mirrormaker2-eos":
		return color.RGBA{R: 0xff, G: 0x98, B: 0x96, A: 0xff}
	case "bare":
		return color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	case "baresarama":
		return color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	}
	return color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
}

// chart draws the records on the target over time for one run of each contender (by name).
func chart(path string, runs map[string][]point) error {
	p := plot.New()
	p.Title.Text = "Catch-up: records on the target over time"
	p.X.Label.Text = "seconds since the mirror started"
	p.Y.Label.Text = "records on the target"
	p.Add(plotter.NewGrid())
	// Exactly-once dashed; the bare mirror, a reference, dotted.
	for _, c := range contenders {
		name := c.name
		pts := runs[name]
		if len(pts) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(pts))
		for i, pt := range pts {
			xys[i].X, xys[i].Y = pt.seconds, float64(pt.records)
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("chart %s: %w", name, err)
		}
		line.Color = colorOf(name)
		line.Width = vg.Points(2)
		switch {
		case c.exactlyOnce:
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		case c.program == "baremirror":
			line.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		}
		p.Add(line)
		p.Legend.Add(c.label, line)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}
