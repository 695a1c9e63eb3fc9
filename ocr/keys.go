package ocr

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Keys is a recogniser's character list (PaddleOCR's character_dict_path, e.g.
// ppocr_keys_v1.txt) as PaddleOCR's CTCLabelDecode with use_space_char builds it: class 0 is
// the CTC blank, classes 1..n the file's lines in order, class n+1 the space.
type Keys struct {
	classes []string // index = class; classes[0] = "" (blank)
	set     map[string]bool
}

// maxKeysBytes bounds a keys file (ppocr_keys_v1.txt is 26 KB).
const maxKeysBytes = 16 << 20

// LoadKeys reads a keys file: one character a line, "\n" or "\r\n" line ends, the last line
// with or without one.
func LoadKeys(path string) (*Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	k, err := ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("keys %s: %w", path, err)
	}
	return k, nil
}

// ParseKeys reads a keys file's contents (see LoadKeys).
func ParseKeys(r io.Reader) (*Keys, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeysBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeysBytes {
		return nil, fmt.Errorf("larger than %d bytes: not a keys file", maxKeysBytes)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil, fmt.Errorf("no characters")
	}
	lines := strings.Split(s, "\n")
	k := &Keys{classes: make([]string, 0, len(lines)+2), set: make(map[string]bool, len(lines)+1)}
	k.classes = append(k.classes, "")
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		k.classes = append(k.classes, l)
		k.set[l] = true
	}
	k.classes = append(k.classes, " ")
	k.set[" "] = true
	return k, nil
}

// Len is the number of characters in the file (without blank and space).
func (k *Keys) Len() int { return len(k.classes) - 2 }

// Classes is the recogniser's output width: Len() + 2 (blank and space).
func (k *Keys) Classes() int { return len(k.classes) }

// Label is class i's text: "" for the blank (0), " " for the last class.
func (k *Keys) Label(i int) string { return k.classes[i] }

// Missing returns the distinct runes of text that no class reads, in order of appearance.
func (k *Keys) Missing(text string) []rune {
	var out []rune
	seen := map[rune]bool{}
	for _, r := range text {
		if !k.set[string(r)] && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}
