// Package ocr measures whether PaddleOCR models still read text: the PP-OCRv4 recogniser
// (CTC, 48-pixel lines), the PP-OCRv4 DB text detector and the PP-OCR mobile v2.0 direction
// classifier (0 or 180 degrees), as ONNX models, before and after compression.
//
// Data are synthetic and deterministic: English-like text lines drawn with the system's
// TrueType fonts (render.go, text.go, fonts.go) on plain or tinted backgrounds with noise and
// small rotations, and pages of such lines with their ground-truth boxes. Preprocessing
// follows PaddleOCR's Python inference code (preprocess.go): BGR channel order, height 48,
// (x/255 - 0.5)/0.5 for lines, ImageNet mean and std for pages. Sets are written as float32
// .npy tensors with their ground truth and PNG images (dataset.go, npy.go), for calibration
// and for evaluation from disjoint seeds.
//
// Scoring (ctc.go, metrics.go, eval.go) runs models through a caller-supplied Run function,
// so the package does not depend on onnxruntime: characters right (1 - edit distance /
// length) and exact lines for the recogniser, accuracy for the classifier, and for the
// detector the recall of ground-truth boxes and the pixel F1 agreement of the thresholded
// probability maps of a compressed model with the original's.
package ocr
