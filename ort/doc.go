// Package ort runs models in onnxruntime: it finds and loads the shared library (LibraryEnv,
// InstallDir, FindLibrary), opens sessions on the CPU or CUDA provider, feeds data sets through
// a model in batches (Infer), and builds capture models that compute each batch's statistics of
// chosen tensors inside the graph (Collect, gram.go), which it adds up into calib.Result. It
// also scores classifiers (Accuracy).
//
// It is the only package that imports onnxruntime_go; it must not import the rewrite, the
// orchestration (package compress) or the command line.
package ort
