// Package calib turns calibration data into statistics: it reads data sets (.npy, ONNX .pb
// tensors, MNIST IDX), runs them through a model in onnxruntime capturing any tensors, and
// accumulates each captured activation's channel mean and covariance in float64 as streaming
// sums, with their PCA.
package calib
