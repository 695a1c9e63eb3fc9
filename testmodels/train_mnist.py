#!/usr/bin/env python3
"""Train a small all-conv MNIST classifier and export it to ONNX.

Usage (from the repo root):
  /usr/bin/python3 testmodels/train_mnist.py --data DIR [--out testmodels/mnist_cnn.onnx] [--epochs 3]

DIR holds the gzip IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz.
"""
import argparse
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: unsupported IDX header")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load(data_dir, prefix):
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, y.astype(np.int64)


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.LeakyReLU(0.1),       # 28 -> 26
        nn.Conv2d(32, 32, 3), nn.LeakyReLU(0.1),      # 26 -> 24
        nn.MaxPool2d(2),                              # 24 -> 12
        nn.Conv2d(32, 64, 3), nn.LeakyReLU(0.1),      # 12 -> 10
        nn.Conv2d(64, 64, 3), nn.LeakyReLU(0.1),      # 10 -> 8
        nn.MaxPool2d(2),                              # 8 -> 4
        nn.Conv2d(64, 128, 3), nn.LeakyReLU(0.1),     # 4 -> 2
        nn.Conv2d(128, 128, 2), nn.LeakyReLU(0.1),    # 2 -> 1
        nn.Conv2d(128, 10, 1),                        # 1 -> 1
        nn.Flatten(),                                 # N x 10 logits
    )


@torch.no_grad()
def accuracy(model, x, y, bs=1000):
    model.eval()
    correct = 0
    for i in range(0, len(x), bs):
        pred = model(torch.from_numpy(x[i:i + bs])).argmax(1).numpy()
        correct += int((pred == y[i:i + bs]).sum())
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with MNIST IDX .gz files")
    ap.add_argument("--out", default="testmodels/mnist_cnn.onnx")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)

    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")
    print(f"train {xtr.shape} test {xte.shape}", flush=True)

    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    lossf = nn.CrossEntropyLoss()
    xtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(ytr)

    acc = None
    for ep in range(args.epochs):
        model.train()
        t0 = time.time()
        perm = np.random.permutation(len(xtr))
        tot, n = 0.0, 0
        for i in range(0, len(perm), args.batch):
            idx = torch.from_numpy(perm[i:i + args.batch])
            xb, yb = xtr_t[idx], ytr_t[idx]
            opt.zero_grad()
            loss = lossf(model(xb), yb)
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            n += len(idx)
        dt = time.time() - t0
        acc = accuracy(model, xte, yte)
        print(f"epoch {ep + 1}: loss {tot / n:.4f} test_acc {acc:.4f} ({dt:.1f}s)", flush=True)
    print(f"final test accuracy: {acc:.4f}")

    model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        model, dummy, args.out,
        opset_version=13,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True,
    )

    import onnx
    m = onnx.load(args.out)
    onnx.checker.check_model(m, full_check=True)
    convs = [n.name for n in m.graph.node if n.op_type == "Conv"]
    print(f"exported {args.out} ({os.path.getsize(args.out)} bytes), opset "
          f"{m.opset_import[0].version}, {len(m.graph.node)} nodes")
    print(f"{len(convs)} Conv nodes: {convs}")


if __name__ == "__main__":
    main()
