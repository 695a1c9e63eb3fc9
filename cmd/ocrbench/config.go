package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// config is one compression: a name for the table and the rule flags given to convpca
// compress after the model, --calib, --out and --report.
type config struct {
	Name  string
	Flags []string
}

// Keywords of -configs and -variants that stand for no flags.
const (
	defaultConfig = "default"  // -configs: convpca's default rule
	oneShot       = "one-shot" // -variants: no extra flags
)

// reserved are the flags ocrbench gives every compress itself.
var reserved = map[string]bool{"--calib": true, "--out": true, "-o": true, "--report": true, "--stats": true}

// parseConfigs crosses the ';'-separated rule flag sets of configs ("default" for none) with
// the ';'-separated extra flag sets of variants ("one-shot" for none): every config with every
// variant, configs outer. Flags are split on white space (no quoting).
func parseConfigs(configs, variants string) ([]config, error) {
	split := func(list, none, what string) ([][]string, error) {
		var out [][]string
		for _, part := range strings.Split(list, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if part == none {
				out = append(out, nil)
				continue
			}
			fields := strings.Fields(part)
			if !strings.HasPrefix(fields[0], "-") {
				return nil, fmt.Errorf("%s %q: want flags such as --target-macs 0.5, or %q", what, part, none)
			}
			for _, f := range fields {
				name, _, _ := strings.Cut(f, "=")
				if reserved[name] {
					return nil, fmt.Errorf("%s %q: ocrbench gives %s itself", what, part, name)
				}
			}
			out = append(out, fields)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("-%s is empty", what)
		}
		return out, nil
	}
	cs, err := split(configs, defaultConfig, "configs")
	if err != nil {
		return nil, err
	}
	vs, err := split(variants, oneShot, "variants")
	if err != nil {
		return nil, err
	}
	var out []config
	seen := map[string]bool{}
	for _, c := range cs {
		for _, v := range vs {
			flags := append(append([]string(nil), c...), v...)
			name := strings.Join(flags, " ")
			if len(c) == 0 {
				name = strings.TrimSpace(defaultConfig + " " + strings.Join(v, " "))
			}
			if seen[name] {
				return nil, fmt.Errorf("configuration %q given twice", name)
			}
			seen[name] = true
			out = append(out, config{Name: name, Flags: flags})
		}
	}
	return out, nil
}

// slug is a file name for a configuration: "--target-macs 0.5 --sequential" gives
// "target-macs_0.5_sequential".
func slug(c config) string {
	if len(c.Flags) == 0 {
		return defaultConfig
	}
	parts := make([]string, len(c.Flags))
	for i, f := range c.Flags {
		f = strings.TrimLeft(f, "-")
		parts[i] = strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
				return r
			}
			return '_'
		}, f)
	}
	s := strings.Join(parts, "_")
	if len(s) > 80 {
		sum := sha256.Sum256([]byte(strings.Join(c.Flags, "\x00")))
		s = s[:64] + "_" + hex.EncodeToString(sum[:6])
	}
	return s
}
