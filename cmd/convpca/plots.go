package main

import (
	"errors"

	"github.com/convpca/convpca/rewrite"
)

// writePlots writes PNG plots of a compression into dir: for each applied layer, its
// normalised eigenvalue spectra (rep.Layers[i].InSpectrum / OutSpectrum, log scale) with the
// chosen ranks marked; with probes (a --max-drop or --max-error search), the score against MACs.
func writePlots(dir string, rep *rewrite.Report, probes []rewrite.Probe) error {
	return errors.New("--plots is not available yet")
}
