// Package plots draws the PNG plots of a compression (gonum/plot): each layer's eigenvalue
// spectra with the chosen ranks, and a guarded search's quality against MACs. It reads reports
// and probes only; it runs no model.
package plots

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/convpca/convpca/compress"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/rewrite"
)

// Plot geometry: 7.5in × 4.5in at 128 dpi is a 960×576 PNG, legible at half size in a README.
const (
	plotWidth  = 7.5 * vg.Inch
	plotHeight = 4.5 * vg.Inch
	plotDPI    = 128
	// spectrumFloor is the smallest normalised eigenvalue drawn: zero (or negative, from
	// rounding) eigenvalues are raised to it so that the log scale stays finite.
	spectrumFloor = 1e-12
)

var (
	inColor   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} // blue
	outColor  = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff} // orange
	okColor   = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff} // green
	failColor = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff} // red
	gridColor = color.Gray{Y: 0xdd}
)

// Write writes PNG plots of a compression into dir, creating it if needed: for each
// applied layer, <layer>.png with its normalised eigenvalue spectra λᵢ/λ₁ (rep.Layers[i].InSpectrum
// and OutSpectrum, log scale) and the chosen ranks marked; with probes (a --max-drop or
// --max-error search), search.png with the accuracy or error of each probe against its MACs
// reduction. Layer names are sanitised into file names (see plotFileNames).
func Write(dir string, rep *rewrite.Report, probes []compress.Probe) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	if rep != nil {
		var layers []rewrite.Layer
		for _, l := range rep.Layers {
			if l.Applied && (len(l.InSpectrum) > 0 || len(l.OutSpectrum) > 0) {
				layers = append(layers, l)
			}
		}
		names := plotFileNames(layers)
		for i, l := range layers {
			if err := savePlot(filepath.Join(dir, names[i]), spectrumPlot(l)); err != nil {
				return err
			}
		}
	}
	if len(probes) > 0 {
		if err := savePlot(filepath.Join(dir, "search.png"), searchPlot(probes)); err != nil {
			return err
		}
	}
	return nil
}

// plotFileNames gives each layer a distinct file name: its name with every byte outside
// [A-Za-z0-9._-] replaced by '_', leading and trailing '_' and '.' trimmed ("/2/Conv" →
// "2_Conv.png"), a suffix -2, -3, ... where names collide, and never "search.png".
func plotFileNames(layers []rewrite.Layer) []string {
	used := map[string]bool{"search": true}
	names := make([]string, len(layers))
	for i, l := range layers {
		base := sanitiseFileName(l.Name)
		name := base
		for n := 2; used[strings.ToLower(name)]; n++ {
			name = base + "-" + strconv.Itoa(n)
		}
		used[strings.ToLower(name)] = true // case-insensitive file systems
		names[i] = name + ".png"
	}
	return names
}

func sanitiseFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	s = strings.Trim(string(b), "_.")
	if len(s) > 100 {
		s = s[:100]
	}
	if s == "" {
		s = "layer"
	}
	return s
}

// spectrumPlot draws λᵢ/λ₁ against i (from 1) for each analysed side of l, with a dashed
// vertical line at the rank kept on that side.
func spectrumPlot(l rewrite.Layer) *plot.Plot {
	p := newPlot()
	p.Title.Text = spectrumTitle(l)
	p.X.Label.Text = "rank index i"
	p.Y.Label.Text = "eigenvalue λᵢ / λ₁"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
	p.Add(grid())

	lo, n := 1.0, max(len(l.InSpectrum), len(l.OutSpectrum))
	type side struct {
		spec  []float64
		rank  int
		chans int
		name  string
		col   color.Color
		glyph draw.GlyphDrawer
	}
	sides := []side{
		{l.InSpectrum, l.InRank, l.InChannels, "input", inColor, draw.CircleGlyph{}},
		{l.OutSpectrum, l.Rank, l.OutChannels, "output", outColor, draw.SquareGlyph{}},
	}
	for _, s := range sides {
		if len(s.spec) == 0 {
			continue
		}
		xys := normalisedSpectrum(s.spec)
		for _, xy := range xys {
			lo = min(lo, xy.Y)
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			panic("plots: " + err.Error()) // normalisedSpectrum gives finite values only
		}
		line.Color, line.Width = s.col, vg.Points(2)
		p.Add(line)
		label := "input second moment"
		if s.name == "output" {
			label = "output covariance"
		}
		if n <= 64 { // points only where they stay apart
			pts, _ := plotter.NewScatter(xys)
			pts.Color, pts.Shape, pts.Radius = s.col, s.glyph, vg.Points(2.5)
			p.Add(pts)
			p.Legend.Add(label, line, pts)
		} else {
			p.Legend.Add(label, line)
		}
	}
	// At least one decade, and the ranks' markers spanning the whole height.
	lo = math.Pow(10, math.Floor(math.Log10(min(lo, 0.1))))
	p.Y.Min, p.Y.Max = lo, 1.3
	p.X.Min, p.X.Max = 0.5, float64(n)+0.5
	p.X.Tick.Marker = indexTicks{}
	for _, s := range sides {
		if len(s.spec) == 0 || s.rank <= 0 {
			continue
		}
		r := float64(s.rank)
		mark, _ := plotter.NewLine(plotter.XYs{{X: r, Y: lo}, {X: r, Y: p.Y.Max}})
		mark.Color, mark.Width = s.col, vg.Points(1.75)
		mark.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(mark)
		p.Legend.Add(fmt.Sprintf("%s rank %d of %d", s.name, s.rank, s.chans), mark)
	}
	return p
}

// spectrumTitle reads "layer — side, ranks r/in in, k/out out", naming only the sides
// factorized.
func spectrumTitle(l rewrite.Layer) string {
	var ranks []string
	if l.InRank > 0 {
		ranks = append(ranks, fmt.Sprintf("%d/%d in", l.InRank, l.InChannels))
	}
	if l.Rank > 0 {
		ranks = append(ranks, fmt.Sprintf("%d/%d out", l.Rank, l.OutChannels))
	}
	t := l.Name
	if l.Side != "" {
		t += " — " + string(l.Side)
	}
	switch len(ranks) {
	case 1:
		t += ", rank " + ranks[0]
	case 2:
		t += ", ranks " + strings.Join(ranks, ", ")
	}
	return t
}

// normalisedSpectrum returns (i, λᵢ/λ₁) for i from 1, kept within [spectrumFloor,
// 1/spectrumFloor] (spectrumFloor when λ₁ is not positive or the ratio is NaN).
func normalisedSpectrum(spec []float64) plotter.XYs {
	xys := make(plotter.XYs, len(spec))
	top := spec[0]
	for i, v := range spec {
		y := v / top
		if !(top > 0) || !(y >= spectrumFloor) {
			y = spectrumFloor
		}
		xys[i] = plotter.XY{X: float64(i + 1), Y: min(y, 1/spectrumFloor)}
	}
	return xys
}

// searchPlot draws each probe's top-1 accuracy (when measured) or score against its MACs
// reduction, within bound and over it marked apart, the kept probe ringed. The y axis zooms
// on the bound: a probe far past it (score over offScale) sits on the axis's edge, labelled
// with its value, so that a collapse at the largest reduction does not flatten the rest.
func searchPlot(probes []compress.Probe) *plot.Plot {
	p := newPlot()
	p.Title.Text = "MACs target search"
	p.X.Label.Text = "MACs reduction (x)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ratioTicks{}
	p.Add(grid())

	// The probes drawn, in order of reduction.
	var sorted []compress.Probe
	accuracy := false
	for _, pr := range probes {
		if pr.MACRatio > 0 && !math.IsInf(pr.MACRatio, 0) && !math.IsNaN(pr.Score) && !math.IsInf(pr.Score, 0) {
			sorted = append(sorted, pr)
			accuracy = accuracy || pr.Accuracy > 0
		}
	}
	if len(sorted) == 0 {
		p.X.Scale, p.X.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		return p
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].MACRatio < sorted[j].MACRatio })
	// Every accuracy drop is measured from the same original accuracy (in %): y = base - score.
	base, sign := 0.0, 1.0
	p.Y.Label.Text = "score (relative L2 error of the outputs)"
	if accuracy {
		base, sign = 100*sorted[0].Accuracy+sorted[0].Score, -1
		p.Y.Label.Text = "top-1 accuracy (%)"
	}
	limit := offScale(sorted)
	y := func(score float64) float64 { return base + sign*min(score, limit) }

	var all, ok, bad plotter.XYs
	var off plotter.XYLabels
	best := -1
	for i, pr := range sorted {
		xy := plotter.XY{X: pr.MACRatio, Y: y(pr.Score)}
		all = append(all, xy)
		if pr.OK {
			ok = append(ok, xy)
			if best < 0 || pr.MACs <= sorted[best].MACs {
				best = i
			}
		} else {
			bad = append(bad, xy)
		}
		if pr.Score > limit {
			off.XYs = append(off.XYs, xy)
			if accuracy {
				off.Labels = append(off.Labels, fmt.Sprintf("↓ %.1f%%", 100*pr.Accuracy))
			} else {
				off.Labels = append(off.Labels, "↑ "+strconv.FormatFloat(pr.Score, 'g', 3, 64))
			}
		}
	}
	if accuracy {
		ref, _ := plotter.NewLine(plotter.XYs{{X: all[0].X, Y: base}, {X: all[len(all)-1].X, Y: base}})
		ref.Color, ref.Width = color.Gray{Y: 0x60}, vg.Points(1.5)
		ref.Dashes = []vg.Length{vg.Points(2), vg.Points(3)}
		p.Add(ref)
		p.Legend.Add(fmt.Sprintf("original model (%.2f%%)", base), ref)
	}
	trend, _ := plotter.NewLine(all)
	trend.Color, trend.Width = color.Gray{Y: 0xa0}, vg.Points(1)
	p.Add(trend)
	if len(ok) > 0 {
		s, _ := plotter.NewScatter(ok)
		s.Color, s.Shape, s.Radius = okColor, draw.CircleGlyph{}, vg.Points(5)
		p.Add(s)
		p.Legend.Add("within bound", s)
	}
	if len(bad) > 0 {
		s, _ := plotter.NewScatter(bad)
		s.Color, s.Shape, s.Radius = failColor, boldGlyph{width: vg.Points(2.5)}, vg.Points(5)
		p.Add(s)
		p.Legend.Add("over bound", s)
	}
	if best >= 0 {
		s, _ := plotter.NewScatter(plotter.XYs{all[best]})
		s.Color, s.Shape, s.Radius = color.Black, boldGlyph{ring: true, width: vg.Points(1.5)}, vg.Points(8)
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("kept (%.2fx)", sorted[best].MACRatio), s)
	}
	if len(off.XYs) > 0 {
		labels, _ := plotter.NewLabels(off)
		for i := range labels.TextStyle {
			labels.TextStyle[i].Font = sansFont(vg.Points(10))
			labels.TextStyle[i].Color = failColor
			labels.TextStyle[i].XAlign = draw.XCenter
		}
		// Inside the plot, beside the cross: above it at the bottom edge, below at the top.
		labels.Offset = vg.Point{Y: vg.Points(9)}
		if !accuracy {
			labels.Offset.Y = -vg.Points(20)
		}
		p.Add(labels)
	}
	// Room around the points: a factor on the log x axis, a fraction of the span on y.
	xlo, xhi := all[0].X, all[len(all)-1].X
	p.X.Min, p.X.Max = max(xlo/1.15, 0.5), xhi*1.15
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, xy := range all {
		ylo, yhi = min(ylo, xy.Y), max(yhi, xy.Y)
	}
	if accuracy {
		yhi = max(yhi, base)
	} else {
		ylo = min(ylo, 0)
	}
	pad := max((yhi-ylo)*0.08, math.Abs(yhi)*0.001, 1e-3)
	p.Y.Min, p.Y.Max = ylo-pad, yhi+pad
	p.Y.Tick.Marker = niceTicks{}
	// The accuracy falls to the right and the error rises: the left corner away from the
	// points holds the legend.
	p.Legend.Top, p.Legend.Left = !accuracy, true
	p.Legend.XOffs = vg.Points(8)
	if accuracy {
		p.Legend.YOffs = vg.Points(8)
	}
	p.Legend.Padding = vg.Points(6)
	return p
}

// offScale is the largest score searchPlot draws at its place: three times the smallest
// score over the bound (and at least 1.5 times the largest within it), or +Inf when no
// probe failed.
func offScale(probes []compress.Probe) float64 {
	minBad, maxOK := math.Inf(1), math.Inf(-1)
	for _, pr := range probes {
		if pr.OK {
			maxOK = max(maxOK, pr.Score)
		} else {
			minBad = min(minBad, pr.Score)
		}
	}
	if math.IsInf(minBad, 1) || minBad <= 0 {
		return math.Inf(1)
	}
	return max(3*minBad, 1.5*maxOK)
}

// newPlot returns a plot with the fonts, line widths and paddings of convpca's figures.
func newPlot() *plot.Plot {
	sans := sansFont
	p := plot.New()
	p.Title.TextStyle.Font = sans(vg.Points(15))
	p.Title.Padding = vg.Points(10)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(vg.Points(13))
		a.Label.Padding = vg.Points(4)
		a.Tick.Label.Font = sans(vg.Points(11))
		a.Width = vg.Points(1)
		a.Tick.Width = vg.Points(1)
		a.Padding = vg.Points(2)
	}
	p.Legend.TextStyle.Font = sans(vg.Points(11))
	p.Legend.Top = true
	p.Legend.ThumbnailWidth = vg.Points(28)
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(8), -vg.Points(6)
	p.Legend.Padding = vg.Points(3)
	return p
}

func sansFont(size vg.Length) font.Font {
	return font.Font{Typeface: "Liberation", Variant: "Sans", Size: size}
}

func grid() *plotter.Grid {
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = gridColor, gridColor
	g.Vertical.Width, g.Horizontal.Width = vg.Points(0.75), vg.Points(0.75)
	return g
}

// savePlot renders p as a PNG and writes it atomically to path.
func savePlot(path string, p *plot.Plot) error {
	c := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))
	// A margin around the whole figure, so that nothing touches the edge.
	dc := draw.Crop(draw.New(c), vg.Points(6), -vg.Points(12), vg.Points(4), -vg.Points(4))
	p.Draw(dc)
	return onnxio.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
		return err
	})
}

// logTicks marks powers of ten, labelling at most about seven of them ("1", "0.01", "1e-06").
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	a, b := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	step := max(1, (b-a+6)/7)
	var ticks []plot.Tick
	for e := a; e <= b; e++ {
		v := math.Pow10(e)
		if e%step == 0 {
			ticks = append(ticks, plot.Tick{Value: v, Label: decadeLabel(e)})
		} else {
			ticks = append(ticks, plot.Tick{Value: v})
		}
		if step == 1 && e < b {
			for k := 2; k < 10; k++ {
				ticks = append(ticks, plot.Tick{Value: float64(k) * v})
			}
		}
	}
	return ticks
}

func decadeLabel(e int) string {
	if -3 <= e && e <= 3 {
		return strconv.FormatFloat(math.Pow10(e), 'f', -1, 64)
	}
	return "1e" + strconv.Itoa(e)
}

// indexTicks marks 1 and the multiples of a round step (1, 2, 5, 10, 20, ...) giving at most
// about ten labels.
type indexTicks struct{}

func (indexTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for k := 0; (hi-lo)/step > 10; k++ {
		step *= []float64{2, 2.5, 2}[k%3] // 1, 2, 5, 10, 20, 50, ...
	}
	ticks := []plot.Tick{{Value: 1, Label: "1"}}
	for v := step; v <= hi; v += step {
		if v > 1 {
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	return ticks
}

// niceTicks marks a linear axis at the multiples of a round step (1, 2 or 5 times a power of
// ten) giving three to eight labels.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 4, 64)}}
	}
	step := math.Pow10(int(math.Floor(math.Log10(hi-lo))) - 1)
	for k := 0; (hi-lo)/step > 8; k++ {
		step *= []float64{2, 2.5, 2}[k%3]
	}
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi; i++ {
		v := i*step + 0 // no "-0"
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 6, 64)})
		if minor := v + step/2; minor <= hi {
			ticks = append(ticks, plot.Tick{Value: minor})
		}
	}
	return ticks
}

// ratioTicks marks 1, 2, 5, 10, 20, 50, ... (with minor ticks between) on a log axis of
// reduction factors.
type ratioTicks struct{}

func (ratioTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for v := math.Pow10(int(math.Floor(math.Log10(lo)))); v <= hi*10; v *= 10 {
		for k := 1; k < 10; k++ {
			x := float64(k) * v
			t := plot.Tick{Value: x}
			if k == 1 || k == 2 || k == 5 {
				t.Label = strconv.FormatFloat(x, 'g', -1, 64) + "x"
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// boldGlyph is a cross (or a ring) drawn with a chosen line width: draw.CrossGlyph and
// draw.RingGlyph use 0.5pt, too thin to read at a glance.
type boldGlyph struct {
	ring  bool
	width vg.Length
}

func (g boldGlyph) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	c.SetLineStyle(draw.LineStyle{Color: sty.Color, Width: g.width})
	var p vg.Path
	if g.ring {
		p.Move(vg.Point{X: pt.X + sty.Radius, Y: pt.Y})
		p.Arc(pt, sty.Radius, 0, 2*math.Pi)
		p.Close()
		c.Stroke(p)
		return
	}
	r := sty.Radius * math.Sqrt2 / 2
	p.Move(vg.Point{X: pt.X - r, Y: pt.Y - r})
	p.Line(vg.Point{X: pt.X + r, Y: pt.Y + r})
	p.Move(vg.Point{X: pt.X - r, Y: pt.Y + r})
	p.Line(vg.Point{X: pt.X + r, Y: pt.Y - r})
	c.Stroke(p)
}
