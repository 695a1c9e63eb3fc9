package ocr

import (
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
)

// RecSet is a recogniser data set: text lines and their preprocessed inputs.
type RecSet struct {
	X             []float32 // N x 3 x Height x Width, LineInput of each image (BGR, [-1, 1], zero padded)
	Height, Width int
	Texts         []string      // ground truth, one per line
	Styles        []Style       // how each line was drawn; nil when loaded from disk
	Images        []*image.RGBA // the rendered lines; nil when loaded from disk
}

// Len is the number of lines.
func (s *RecSet) Len() int { return len(s.Texts) }

// ClsSet is a direction classifier data set: lines upright (label 0) or turned 180 degrees
// (label 1).
type ClsSet struct {
	X             []float32 // N x 3 x Height x Width, LineInput of each image
	Height, Width int
	Labels        []int         // 0: upright, 1: upside down (PaddleOCR's label_list ["0", "180"])
	Texts         []string      // each line's text, read upright
	Images        []*image.RGBA // as the classifier sees them (turned when the label is 1); nil when loaded
}

// Len is the number of lines.
func (s *ClsSet) Len() int { return len(s.Labels) }

// DetSet is a detector data set: pages with the boxes of their lines.
type DetSet struct {
	X             []float32 // N x 3 x Height x Width, PageInput of each page (BGR, ImageNet normalisation)
	Height, Width int
	Boxes         [][]image.Rectangle // each page's line boxes, in input pixels
	Texts         [][]string          // each page's line texts, parallel to Boxes
	Images        []*image.RGBA       // the pages; nil when loaded from disk
}

// Len is the number of pages.
func (s *DetSet) Len() int { return len(s.Boxes) }

// MakeRecSet renders n random lines (item i from a seed derived from seed and i) and
// preprocesses them to RecHeight x RecWidth.
func MakeRecSet(r *Renderer, seed uint64, n int, opt LineOptions) (*RecSet, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative set size %d", n)
	}
	s := &RecSet{X: make([]float32, n*3*RecHeight*RecWidth), Height: RecHeight, Width: RecWidth,
		Texts: make([]string, n), Styles: make([]Style, n), Images: make([]*image.RGBA, n)}
	per := 3 * RecHeight * RecWidth
	err := parallel(n, func(i int) error {
		l, err := r.RandomLine(itemSeed(seed, i), opt)
		if err != nil {
			return fmt.Errorf("line %d: %w", i, err)
		}
		if _, err := LineInput(s.X[i*per:(i+1)*per], l.Image, RecHeight, RecWidth); err != nil {
			return fmt.Errorf("line %d: %w", i, err)
		}
		s.Texts[i], s.Styles[i], s.Images[i] = l.Text, l.Style, l.Image
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// MakeClsSet renders n random lines as MakeRecSet does, turns the odd-numbered ones by 180
// degrees (label 1; so half of them, alternating), and preprocesses them to ClsHeight x
// ClsWidth.
func MakeClsSet(r *Renderer, seed uint64, n int, opt LineOptions) (*ClsSet, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative set size %d", n)
	}
	s := &ClsSet{X: make([]float32, n*3*ClsHeight*ClsWidth), Height: ClsHeight, Width: ClsWidth,
		Labels: make([]int, n), Texts: make([]string, n), Images: make([]*image.RGBA, n)}
	per := 3 * ClsHeight * ClsWidth
	err := parallel(n, func(i int) error {
		l, err := r.RandomLine(itemSeed(seed, i), opt)
		if err != nil {
			return fmt.Errorf("line %d: %w", i, err)
		}
		img := l.Image
		if i%2 == 1 {
			img = Rotate180(img)
			s.Labels[i] = 1
		}
		if _, err := LineInput(s.X[i*per:(i+1)*per], img, ClsHeight, ClsWidth); err != nil {
			return fmt.Errorf("line %d: %w", i, err)
		}
		s.Texts[i], s.Images[i] = l.Text, img
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// MakeDetSet renders n random pages of width x height pixels (multiples of 32, so that the
// detector sees them unscaled) and preprocesses them.
func MakeDetSet(r *Renderer, seed uint64, n, width, height int) (*DetSet, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative set size %d", n)
	}
	if width%DetMultiple != 0 || height%DetMultiple != 0 {
		return nil, fmt.Errorf("page size %dx%d: sides must be multiples of %d", width, height, DetMultiple)
	}
	s := &DetSet{X: make([]float32, n*3*height*width), Height: height, Width: width,
		Boxes: make([][]image.Rectangle, n), Texts: make([][]string, n), Images: make([]*image.RGBA, n)}
	per := 3 * height * width
	err := parallel(n, func(i int) error {
		p, err := r.RandomPage(itemSeed(seed, i), width, height)
		if err != nil {
			return fmt.Errorf("page %d: %w", i, err)
		}
		if err := PageInput(s.X[i*per:(i+1)*per], p.Image, height, width); err != nil {
			return fmt.Errorf("page %d: %w", i, err)
		}
		s.Boxes[i], s.Texts[i], s.Images[i] = p.Boxes, p.Texts, p.Image
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// File names inside a set's folder.
const (
	inputFile  = "x.npy"       // the preprocessed inputs, float32 N x 3 x H x W
	labelsFile = "labels.json" // the ground truth, one object per sample
	clsLabels  = "labels.npy"  // the classifier's labels, int64 N
	imagesDir  = "images"      // the rendered images, 00000.png, 00001.png, ...
)

// recLabel, clsLabel and detLabel are one sample's entry of labels.json.
type recLabel struct {
	Image string `json:"image"`
	Text  string `json:"text"`
}

type clsLabel struct {
	Image string `json:"image"`
	Text  string `json:"text"`
	Label int    `json:"label"`
}

type detLabel struct {
	Image string   `json:"image"`
	Boxes [][4]int `json:"boxes"` // x0, y0, x1, y1: columns x0..x1-1, rows y0..y1-1
	Texts []string `json:"texts"`
}

func imageName(i int) string {
	return filepath.ToSlash(filepath.Join(imagesDir, fmt.Sprintf("%05d.png", i)))
}

// Write writes the set into dir (created if missing): x.npy (float32 N x 3 x 48 x 320),
// labels.json ([{"image": "images/00000.png", "text": ...}, ...]) and the images as PNG.
func (s *RecSet) Write(dir string) error {
	labels := make([]recLabel, s.Len())
	for i, t := range s.Texts {
		labels[i] = recLabel{Image: imageName(i), Text: t}
	}
	return writeSet(dir, s.X, s.Len(), s.Height, s.Width, labels, s.Images)
}

// Write writes the set into dir: x.npy (float32 N x 3 x 48 x 192), labels.npy (int64 N, 0 or
// 1, for a top-1 evaluation of the classifier), labels.json ([{"image", "text", "label"}])
// and the images as PNG, as the classifier sees them.
func (s *ClsSet) Write(dir string) error {
	labels := make([]clsLabel, s.Len())
	ints := make([]int64, s.Len())
	for i, l := range s.Labels {
		labels[i] = clsLabel{Image: imageName(i), Text: s.Texts[i], Label: l}
		ints[i] = int64(l)
	}
	if err := writeSet(dir, s.X, s.Len(), s.Height, s.Width, labels, s.Images); err != nil {
		return err
	}
	return WriteNpyInt64(filepath.Join(dir, clsLabels), []int{len(ints)}, ints)
}

// Write writes the set into dir: x.npy (float32 N x 3 x H x W), labels.json ([{"image",
// "boxes": [[x0, y0, x1, y1], ...], "texts"}]) and the pages as PNG.
func (s *DetSet) Write(dir string) error {
	labels := make([]detLabel, s.Len())
	for i, bs := range s.Boxes {
		l := detLabel{Image: imageName(i), Boxes: make([][4]int, len(bs)), Texts: s.Texts[i]}
		for j, b := range bs {
			l.Boxes[j] = [4]int{b.Min.X, b.Min.Y, b.Max.X, b.Max.Y}
		}
		labels[i] = l
	}
	return writeSet(dir, s.X, s.Len(), s.Height, s.Width, labels, s.Images)
}

func writeSet(dir string, x []float32, n, h, w int, labels any, images []*image.RGBA) error {
	if err := os.MkdirAll(filepath.Join(dir, imagesDir), 0o755); err != nil {
		return fmt.Errorf("write set: %w", err)
	}
	if err := WriteNpyFloat32(filepath.Join(dir, inputFile), []int{n, 3, h, w}, x); err != nil {
		return err
	}
	b, err := json.MarshalIndent(labels, "", " ")
	if err != nil {
		return fmt.Errorf("write set: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, labelsFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write set: %w", err)
	}
	return parallel(len(images), func(i int) error {
		if images[i] == nil {
			return nil
		}
		return writePNG(filepath.Join(dir, filepath.FromSlash(imageName(i))), images[i])
	})
}

// LoadRecSet reads a set written by RecSet.Write (without its images).
func LoadRecSet(dir string) (*RecSet, error) {
	var labels []recLabel
	x, h, w, err := loadSet(dir, &labels, func() int { return len(labels) })
	if err != nil {
		return nil, err
	}
	s := &RecSet{X: x, Height: h, Width: w, Texts: make([]string, len(labels))}
	for i, l := range labels {
		s.Texts[i] = l.Text
	}
	return s, nil
}

// LoadClsSet reads a set written by ClsSet.Write (without its images).
func LoadClsSet(dir string) (*ClsSet, error) {
	var labels []clsLabel
	x, h, w, err := loadSet(dir, &labels, func() int { return len(labels) })
	if err != nil {
		return nil, err
	}
	s := &ClsSet{X: x, Height: h, Width: w, Labels: make([]int, len(labels)), Texts: make([]string, len(labels))}
	for i, l := range labels {
		if l.Label != 0 && l.Label != 1 {
			return nil, fmt.Errorf("load set %s: label %d of sample %d is not 0 or 1", dir, l.Label, i)
		}
		s.Labels[i], s.Texts[i] = l.Label, l.Text
	}
	return s, nil
}

// LoadDetSet reads a set written by DetSet.Write (without its images).
func LoadDetSet(dir string) (*DetSet, error) {
	var labels []detLabel
	x, h, w, err := loadSet(dir, &labels, func() int { return len(labels) })
	if err != nil {
		return nil, err
	}
	s := &DetSet{X: x, Height: h, Width: w, Boxes: make([][]image.Rectangle, len(labels)), Texts: make([][]string, len(labels))}
	for i, l := range labels {
		if len(l.Texts) != len(l.Boxes) {
			return nil, fmt.Errorf("load set %s: page %d has %d boxes and %d texts", dir, i, len(l.Boxes), len(l.Texts))
		}
		s.Boxes[i] = make([]image.Rectangle, len(l.Boxes))
		for j, b := range l.Boxes {
			s.Boxes[i][j] = image.Rect(b[0], b[1], b[2], b[3])
		}
		s.Texts[i] = l.Texts
	}
	return s, nil
}

// loadSet reads dir's x.npy and labels.json, checking that the inputs are N x 3 x H x W with
// N the number of labels.
func loadSet(dir string, labels any, count func() int) ([]float32, int, int, error) {
	b, err := os.ReadFile(filepath.Join(dir, labelsFile))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("load set: %w", err)
	}
	if err := json.Unmarshal(b, labels); err != nil {
		return nil, 0, 0, fmt.Errorf("load set %s: %s: %w", dir, labelsFile, err)
	}
	x, shape, err := ReadNpyFloat32(filepath.Join(dir, inputFile))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("load set: %w", err)
	}
	if len(shape) != 4 || shape[1] != 3 || shape[0] != count() {
		return nil, 0, 0, fmt.Errorf("load set %s: inputs have shape %v, want %d x 3 x H x W", dir, shape, count())
	}
	return x, shape[2], shape[3], nil
}
