// Package analyze describes models for people reading them: the cost model of every layer
// (parameters and multiply-accumulates per sample, Layers), the shapes of every tensor (from
// value_info, or from one onnxruntime run, Shapes), a summary of declared inputs and outputs,
// and the before/after comparison of two models layer by layer and on data (Diff,
// CompareOutputs), as `convpca inspect` and `convpca diff` print them.
//
// It reads models and runs them; it never edits them. It must not import the orchestration
// (package compress) or the command line.
package analyze
