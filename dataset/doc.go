// Package dataset reads the samples fed to a model: streaming readers of .npy files, ONNX
// TensorProto .pb files and MNIST IDX images (.gz too), folders of PNG and JPEG images
// preprocessed as ImageOptions say (image.go), .npz files of one named array per model input
// of any DType (npz.go; a FieldReader, fields.go), label files, random normal data for
// benchmarks, and the slicing of a data set into limits and shards (Limit, Shard, ShardFromEnv
// for Slurm job arrays and Kubernetes Indexed Jobs). Sizes declared by a file are checked
// against the file before anything is allocated.
//
// It knows nothing of models beyond onnxio's size limits: it must not import onnxruntime
// (package ort), the statistics (package calib) or the rewrite.
package dataset
