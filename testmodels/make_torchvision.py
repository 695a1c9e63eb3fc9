#!/usr/bin/env python3
"""Export torchvision architectures with random weights to ONNX, a test corpus of real exports.

Usage: /usr/bin/python3 testmodels/make_torchvision.py OUT [--only NAME ...]

Needs Debian's python3-torch (1.13), python3-torchvision (0.14) and python3-onnx (1.12). Writes
into the folder OUT (created if missing):

  <arch>_op<opset>_<variant>.onnx   one model per architecture, opset and variant
  <arch>.expected.npy               the model's output in PyTorch (float32) on input.npy, the
                                    same for every opset and variant of an architecture
  input.npy                         float32 [2, 3, 64, 64], N(0, 1), torch.manual_seed(1)
  manifest.json                     every file written and every combination skipped, and why

Architectures (torchvision's layouts, weights=None, 1000 classes): resnet18, mobilenet_v2,
mobilenet_v3_small, efficientnet_b0, regnet_x_400mf, shufflenet_v2_x0_5, squeezenet1_0,
densenet121; and two tiny ones written here: `tied` (one Conv applied twice, one 2-D Linear
applied twice, one Linear applied twice to an (N, T, C) tensor) and `matmul3d` (a Conv stem,
then Linear layers on an (N, T, C) tensor, as in an attention neck).

Opsets 9, 11, 13 and 17. Variants:
  folded  the default export in eval mode (TrainingMode.EVAL): every BatchNormalization that
          follows a Conv is folded into it (densenet121's, after Concat, stay), Conv nodes
          carry a bias; every arch at every opset (shufflenet_v2_x0_5 fails at opset 9).
  bn      eval mode exported with training=TrainingMode.PRESERVE: the exporter's eval
          peephole pass (which folds BN) is skipped, so BatchNormalization nodes stay, in
          inference form; mobilenet_v2 at every opset, resnet18 and efficientnet_b0 at 13.

Weights: torch.manual_seed(0) before each architecture is built, PyTorch's and torchvision's
default initialisation, then every BatchNorm's weight ~ U(0.5, 1.5), bias ~ N(0, 0.1), running
mean ~ N(0, 0.1), running variance ~ U(0.5, 1.5), so that folding is not the identity. The
same architecture has the same weights at every opset and variant. Input `input`
[batch, 3, 64, 64] float32, output `logits` [batch, classes], dynamic batch. A combination the
exporter of torch 1.13 cannot produce is skipped and listed with the reason; one that the ONNX
checker (full_check=True) rejects is not written and is listed too. The same torch,
torchvision and onnx give byte-identical files.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import sys
import time
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torchvision

SIZE = 64
OPSETS = (9, 11, 13, 17)
TORCHVISION = (
    "resnet18",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_x_400mf",
    "shufflenet_v2_x0_5",
    "squeezenet1_0",
    "densenet121",
)
# (arch, opset) pairs also exported with BatchNormalization kept.
BN_KEPT = [("mobilenet_v2", op) for op in OPSETS] + [("resnet18", 13), ("efficientnet_b0", 13)]


class Tied(nn.Module):
    """Tied weights: `conv` runs twice (one weight and bias initializer for two Conv nodes),
    `fc` twice on a 2-D tensor (two Gemm nodes), `proj` twice on an (N, T, C) tensor (two
    MatMul nodes; the exporter folds the transposed weight into a new initializer)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.conv = nn.Conv2d(16, 16, 3, 1, 1)
        self.proj = nn.Linear(16, 16)
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))  # N,16,32,32
        x = torch.relu(self.conv(x))
        x = torch.relu(self.conv(x))
        t = x.flatten(2).transpose(1, 2)  # N,1024,16
        t = torch.relu(self.proj(t))
        t = self.proj(t)
        v = t.mean(1)  # N,16
        v = torch.relu(self.fc(v))
        v = torch.relu(self.fc(v))
        return self.head(v)


class MatMul3D(nn.Module):
    """A 3-D MatMul by constant weights: Conv stem to (N, T=64, C=32) tokens, LayerNorm-free
    MLP block Linear(32->64) GELU Linear(64->32) with a residual, mean over T, Linear(32->10)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 8, 8)  # patches: N,32,8,8
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)  # N,64,32
        t = t + self.fc2(nn.functional.gelu(self.fc1(t)))
        return self.head(t.mean(1))


def build(arch):
    torch.manual_seed(0)
    if arch == "tied":
        model = Tied()
    elif arch == "matmul3d":
        model = MatMul3D()
    else:
        model = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export(model, x, opset, variant):
    """Returns the serialized model, or raises with the exporter's reason."""
    mode = torch.onnx.TrainingMode.PRESERVE if variant == "bn" else torch.onnx.TrainingMode.EVAL
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, x, f, opset_version=opset, training=mode, do_constant_folding=True,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    if model.training:
        raise RuntimeError("export left the model in training mode")
    return f.getvalue()


def describe(proto):
    """Op counts; the initializers that more than one node reads (name -> node names), looking
    through Identity nodes; and the nodes that read an initializer through an Identity node
    (node name -> the initializers), as the exporter writes for tied weights and for equal
    initializers that it deduplicates."""
    g = proto.graph
    ops = collections.Counter(n.op_type for n in g.node)
    inits = {i.name for i in g.initializer}
    alias = {}  # output of an Identity of an initializer -> the initializer
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            alias[n.output[0]] = n.input[0]
    users = collections.defaultdict(list)
    via_identity = collections.defaultdict(list)
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] in alias:
            continue
        for i in dict.fromkeys(n.input):
            if i in alias:
                via_identity[n.name].append(alias[i])
                users[alias[i]].append(n.name)
            elif i in inits:
                users[i].append(n.name)
    shared = {k: v for k, v in sorted(users.items()) if len(v) > 1}
    return dict(sorted(ops.items())), shared, dict(sorted(via_identity.items()))


def first_line(e):
    s = f"{type(e).__name__}: {e}".strip()
    return s.splitlines()[0] if s else type(e).__name__


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder")
    ap.add_argument("--only", nargs="*", help="architectures to export (default: all)")
    args = ap.parse_args()
    start = time.monotonic()
    archs = list(TORCHVISION) + ["tied", "matmul3d"]
    if args.only:
        unknown = sorted(set(args.only) - set(archs))
        if unknown:
            ap.error(f"unknown architectures {unknown}; known: {archs}")
        archs = [a for a in archs if a in args.only]
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE)
    np.save(os.path.join(args.out, "input.npy"), x.numpy())

    models, skipped = [], []
    for arch in archs:
        t0 = time.monotonic()
        model = build(arch)
        with torch.no_grad():
            y = model(x).numpy()
        expected = f"{arch}.expected.npy"
        np.save(os.path.join(args.out, expected), y)
        params = sum(p.numel() for p in model.parameters())
        variants = [(op, "folded") for op in OPSETS] + [(op, "bn") for a, op in BN_KEPT if a == arch]
        for opset, variant in variants:
            name = f"{arch}_op{opset}_{variant}.onnx"
            try:
                data = export(model, x[:1], opset, variant)
            except Exception as e:  # the exporter's reason, e.g. an op without a symbolic
                reason = "export: " + first_line(e)
                skipped.append({"arch": arch, "opset": opset, "variant": variant, "reason": reason})
                print(f"skip {name}: {reason}", file=sys.stderr)
                continue
            proto = onnx.load_model_from_string(data)
            try:
                onnx.checker.check_model(proto, full_check=True)
            except Exception as e:
                reason = "onnx checker: " + first_line(e)
                skipped.append({"arch": arch, "opset": opset, "variant": variant, "reason": reason})
                print(f"skip {name}: {reason}", file=sys.stderr)
                continue
            ops, shared, via_identity = describe(proto)
            if variant == "bn" and "BatchNormalization" not in ops:
                reason = "PRESERVE exported no BatchNormalization"
                skipped.append({"arch": arch, "opset": opset, "variant": variant, "reason": reason})
                print(f"skip {name}: {reason}", file=sys.stderr)
                continue
            path = os.path.join(args.out, name)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
            models.append({
                "file": name,
                "arch": arch,
                "opset": opset,
                "variant": variant,
                "input": "input",
                "input_shape": [1, 3, SIZE, SIZE],  # as exported; dimension 0 is dynamic
                "output": "logits",
                "output_shape": [1, int(y.shape[1])],
                "expected": expected,
                "params": params,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "ops": ops,
                "shared_initializers": shared,
                "via_identity": via_identity,
            })
        print(f"{arch}: {len([m for m in models if m['arch'] == arch])} files, {params} parameters, "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)

    manifest = {
        "script": "testmodels/make_torchvision.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "input": "input.npy",
        "input_shape": list(x.shape),
        "models": models,
        "skipped": skipped,
    }
    path = os.path.join(args.out, "manifest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {len(models)} models, skipped {len(skipped)}, into {args.out} in "
          f"{time.monotonic() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
