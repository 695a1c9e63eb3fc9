package ocr

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
)

// Config says which sets MakeSets renders.
type Config struct {
	Seed  uint64      // every set's seed derives from it and the set's name
	Fonts []string    // font files in order; nil: FindFonts()
	Lines LineOptions // the rec and cls lines; the zero value means DefaultLineOptions

	RecCalib, RecEval int // recogniser lines
	ClsCalib, ClsEval int // classifier lines
	DetCalib, DetEval int // detector pages

	PageWidth, PageHeight int // detector pages, multiples of 32
}

// DefaultConfig: 200 calibration and 300 evaluation lines for the recogniser and for the
// classifier, 32 and 64 pages of 640 x 640 for the detector.
var DefaultConfig = Config{
	Seed: 1, Lines: DefaultLineOptions,
	RecCalib: 200, RecEval: 300, ClsCalib: 200, ClsEval: 300, DetCalib: 32, DetEval: 64,
	PageWidth: 640, PageHeight: 640,
}

// Sets are the calibration and evaluation sets of the three models.
type Sets struct {
	Config            Config
	Fonts             []*Font
	RecCalib, RecEval *RecSet
	ClsCalib, ClsEval *ClsSet
	DetCalib, DetEval *DetSet
}

// SetSeed is the seed of the set named name ("rec/calib", "rec/eval", "cls/calib", ...)
// under the base seed: calibration and evaluation sets draw from different seeds, so their
// items are rendered from disjoint random streams (a short text may still recur by chance).
func SetSeed(base uint64, name string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, name)
	return mix64(base ^ mix64(h.Sum64()))
}

// MakeSets renders the six sets of cfg.
func MakeSets(cfg Config) (*Sets, error) {
	paths := cfg.Fonts
	if paths == nil {
		var err error
		if paths, err = FindFonts(); err != nil {
			return nil, err
		}
	}
	fonts, err := LoadFonts(paths)
	if err != nil {
		return nil, err
	}
	r, err := NewRenderer(fonts)
	if err != nil {
		return nil, err
	}
	if cfg.Lines == (LineOptions{}) {
		cfg.Lines = DefaultLineOptions
	}
	s := &Sets{Config: cfg, Fonts: fonts}
	s.Config.Fonts = paths
	for _, job := range []struct {
		name string
		make func(seed uint64) error
	}{
		{"rec/calib", func(seed uint64) (err error) { s.RecCalib, err = MakeRecSet(r, seed, cfg.RecCalib, cfg.Lines); return }},
		{"rec/eval", func(seed uint64) (err error) { s.RecEval, err = MakeRecSet(r, seed, cfg.RecEval, cfg.Lines); return }},
		{"cls/calib", func(seed uint64) (err error) { s.ClsCalib, err = MakeClsSet(r, seed, cfg.ClsCalib, cfg.Lines); return }},
		{"cls/eval", func(seed uint64) (err error) { s.ClsEval, err = MakeClsSet(r, seed, cfg.ClsEval, cfg.Lines); return }},
		{"det/calib", func(seed uint64) (err error) {
			s.DetCalib, err = MakeDetSet(r, seed, cfg.DetCalib, cfg.PageWidth, cfg.PageHeight)
			return
		}},
		{"det/eval", func(seed uint64) (err error) {
			s.DetEval, err = MakeDetSet(r, seed, cfg.DetEval, cfg.PageWidth, cfg.PageHeight)
			return
		}},
	} {
		if err := job.make(SetSeed(cfg.Seed, job.name)); err != nil {
			return nil, fmt.Errorf("%s set: %w", job.name, err)
		}
	}
	return s, nil
}

// Manifest describes written sets: how to make them again, and what they hold.
type Manifest struct {
	Seed  uint64         `json:"seed"`
	Lines LineOptions    `json:"lines"`
	Fonts []ManifestFont `json:"fonts"`
	Sets  []ManifestSet  `json:"sets"`
}

// ManifestFont is a font file and its SHA-256, since other fonts give other pixels.
type ManifestFont struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// ManifestSet is one set's folder (relative to the manifest), seed and input shape.
type ManifestSet struct {
	Dir   string `json:"dir"`
	Seed  uint64 `json:"seed"`
	Shape []int  `json:"shape"` // N x 3 x H x W
}

// Write writes every set into its folder under dir (rec/calib, rec/eval, cls/calib, cls/eval,
// det/calib, det/eval) and dir/manifest.json.
func (s *Sets) Write(dir string) error {
	m := Manifest{Seed: s.Config.Seed, Lines: s.Config.Lines}
	for _, f := range s.Fonts {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		sum := sha256.Sum256(b)
		m.Fonts = append(m.Fonts, ManifestFont{Path: f.Path, SHA256: hex.EncodeToString(sum[:])})
	}
	type writer interface{ Write(string) error }
	for _, set := range []struct {
		name  string
		w     writer
		n     int
		h, w2 int
	}{
		{"rec/calib", s.RecCalib, s.RecCalib.Len(), s.RecCalib.Height, s.RecCalib.Width},
		{"rec/eval", s.RecEval, s.RecEval.Len(), s.RecEval.Height, s.RecEval.Width},
		{"cls/calib", s.ClsCalib, s.ClsCalib.Len(), s.ClsCalib.Height, s.ClsCalib.Width},
		{"cls/eval", s.ClsEval, s.ClsEval.Len(), s.ClsEval.Height, s.ClsEval.Width},
		{"det/calib", s.DetCalib, s.DetCalib.Len(), s.DetCalib.Height, s.DetCalib.Width},
		{"det/eval", s.DetEval, s.DetEval.Len(), s.DetEval.Height, s.DetEval.Width},
	} {
		if err := set.w.Write(filepath.Join(dir, filepath.FromSlash(set.name))); err != nil {
			return fmt.Errorf("%s set: %w", set.name, err)
		}
		m.Sets = append(m.Sets, ManifestSet{Dir: set.name, Seed: SetSeed(s.Config.Seed, set.name), Shape: []int{set.n, 3, set.h, set.w2}})
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// WriteSets renders the sets of cfg and writes them under dir (see Sets.Write).
func WriteSets(dir string, cfg Config) (*Sets, error) {
	s, err := MakeSets(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Write(dir); err != nil {
		return nil, err
	}
	return s, nil
}
