package ocr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/image/font/opentype"
	"golang.org/x/image/font/sfnt"
)

// FontGlobs are the patterns FindFonts searches: Debian's fonts-dejavu-core and
// fonts-dejavu-extra, fonts-liberation and fonts-liberation2.
var FontGlobs = []string{
	"/usr/share/fonts/truetype/dejavu/*.ttf",
	"/usr/share/fonts/truetype/liberation/*.ttf",
	"/usr/share/fonts/truetype/liberation2/*.ttf",
}

// FindFonts returns the TrueType files matched by FontGlobs, sorted by path, leaving out math
// fonts (DejaVuMathTeXGyre, whose Latin letters are not text faces). The same installed fonts
// give the same list, hence the same rendered data; the data set manifest records them.
func FindFonts() ([]string, error) {
	var paths []string
	for _, g := range FontGlobs {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("font glob %s: %w", g, err)
		}
		for _, p := range m {
			if !strings.Contains(strings.ToLower(filepath.Base(p)), "math") {
				paths = append(paths, p)
			}
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no TrueType fonts found in %s (install fonts-dejavu-core)", strings.Join(FontGlobs, ", "))
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}

// Font is a parsed TrueType or OpenType font.
type Font struct {
	Path string
	font *opentype.Font
}

// LoadFonts reads and parses the font files.
func LoadFonts(paths []string) ([]*Font, error) {
	if len(paths) == 0 {
		return nil, errors.New("no fonts given")
	}
	fonts := make([]*Font, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read font: %w", err)
		}
		f, err := opentype.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("parse font %s: %w", p, err)
		}
		fonts = append(fonts, &Font{Path: p, font: f})
	}
	return fonts, nil
}

// Covers reports whether the font has a glyph for every rune of text.
func (f *Font) Covers(text string) bool {
	var buf sfnt.Buffer
	for _, r := range text {
		if r == ' ' {
			continue
		}
		if i, err := f.font.GlyphIndex(&buf, r); err != nil || i == 0 {
			return false
		}
	}
	return true
}
