// Package calib turns calibration data into statistics: it reads data sets (.npy, ONNX .pb
// tensors, MNIST IDX), runs them through a model in onnxruntime capturing any tensors, and
// accumulates each captured activation's channel mean and covariance in float64 as streaming
// sums, with their PCA. Statistics files (.cps) keep those sums, so that shards of the data can
// be calibrated apart (Shard, ShardFromEnv) and merged (MergeStats).
package calib
