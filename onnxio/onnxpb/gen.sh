#!/usr/bin/env bash
# Regenerates onnx.pb.go from the onnx.proto that Debian's python3-onnx ships (ONNX 1.12, IR 8),
# with Debian's protobuf-compiler and protoc-gen-go v1.36.12 from the Go module proxy.
#   apt-get install python3-onnx protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
set -euo pipefail
cd "$(dirname "$0")"
src=${ONNX_PROTO:-/usr/lib/python3/dist-packages/onnx/onnx.proto}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/onnx.proto"
PATH=$(go env GOPATH)/bin:$PATH protoc -I "$tmp" \
  --go_out=. --go_opt=paths=source_relative \
  --go_opt=Monnx.proto=github.com/convpca/convpca/onnxio/onnxpb \
  "$tmp/onnx.proto"
