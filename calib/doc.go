// Package calib holds the statistics of calibration: streaming float64 sums (count, sum and
// sum of outer products) of each captured activation's channels (Stats, Result), their PCA
// (Eigen), and the versioned, checksummed statistics file (.cps) that keeps those sums so that
// shards calibrated apart merge exactly (WriteStats, ReadStats, MergeStats).
//
// It is pure computation and file I/O: it must not import onnxruntime (package ort), the data
// readers (package dataset) or the rewrite.
package calib
