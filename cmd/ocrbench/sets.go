package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/convpca/convpca/ocr"
)

// setsVersion changes when what ocrbench writes into a sets folder changes, so that an old
// cache is not read.
const setsVersion = 1

// setsKey is the hash that names the sets folder of cfg: its sizes, seed, line options and
// font files (the fonts decide the pixels).
func setsKey(cfg ocr.Config) (string, error) {
	b, err := json.Marshal(struct {
		Version int
		Config  ocr.Config
	}{setsVersion, cfg})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12], nil
}

// ensureSets returns the folder under work that holds the sets of cfg, rendering and writing
// them first when it does not exist yet (into a temporary folder renamed when complete, so an
// interrupted run leaves no half-written cache).
func ensureSets(work string, cfg ocr.Config, logf func(string, ...any)) (string, error) {
	if cfg.Fonts == nil {
		fonts, err := ocr.FindFonts()
		if err != nil {
			return "", err
		}
		cfg.Fonts = fonts
	}
	key, err := setsKey(cfg)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(work, "sets-"+key)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		logf("sets: cached in %s", dir)
		return dir, nil
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(work, ".sets-"+key+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	t0 := time.Now()
	logf("sets: rendering rec %d+%d, cls %d+%d lines, det %d+%d pages of %dx%d into %s",
		cfg.RecCalib, cfg.RecEval, cfg.ClsCalib, cfg.ClsEval, cfg.DetCalib, cfg.DetEval, cfg.PageWidth, cfg.PageHeight, dir)
	if _, err := ocr.WriteSets(tmp, cfg); err != nil {
		return "", fmt.Errorf("sets: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "manifest.json")); serr == nil {
			return dir, nil // another run wrote them meanwhile
		}
		return "", fmt.Errorf("sets: %w", err)
	}
	logf("sets: done in %.1f s", time.Since(t0).Seconds())
	return dir, nil
}

// calibFile and evalDir are where a task's calibration inputs and evaluation set lie in a
// sets folder (ocr.Sets.Write's layout).
func calibFile(sets, task string) string { return filepath.Join(sets, task, "calib", "x.npy") }
func evalDir(sets, task string) string   { return filepath.Join(sets, task, "eval") }
