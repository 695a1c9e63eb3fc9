package latency

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/convpca/convpca/onnxio"
)

// ModelProgram returns the program of a whole model: m fed through its graph input named input
// with dims (batch first), computing its graph outputs.
func ModelProgram(name string, m *onnxio.Model, input string, dims []int64) (Program, error) {
	data, err := m.Marshal()
	if err != nil {
		return Program{}, err
	}
	return Program{Name: name, Model: data, Input: input, Dims: dims, Outputs: m.Graph.Outputs()}, nil
}

// MeasureTogether times programs side by side, as Measure times a layer's original and its
// candidates: in rounds, in a new random order each round, each turn of a program paired with
// a turn of the first (the reference), until every median's confidence interval is within
// RelTol, or LayerBudget (each having run at least 3 times) or MaxRuns is spent; a program's
// time is the median of its ratios to the reference's turns beside it, times the reference's
// median. Nothing is cached. It returns the programs' points in order.
func MeasureTogether(progs []Program, opts Options) ([]Point, error) {
	if len(progs) == 0 || len(progs) >= groupSize {
		return nil, fmt.Errorf("latency: cannot time %d programs together", len(progs))
	}
	m := &meter{o: opts.withDefaults(), rng: rand.New(rand.NewPCG(1, 2))}
	ref, err := m.openWarm(progs[0])
	if err != nil {
		return nil, err
	}
	defer ref.timer.Close()
	_, pts, err := m.rounds(ref, progs, time.Now().Add(m.o.LayerBudget))
	return pts, err
}
