#!/usr/bin/env python3
"""Generate tiny deterministic ONNX conv models for Go unit tests.

Usage (from the repo root): /usr/bin/python3 testmodels/make_tiny.py [--out testmodels/tiny]
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

OPSET = 13
IR_VERSION = 8


def rnd(rng, *shape):
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


def init(name, arr):
    return numpy_helper.from_array(arr, name=name)


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def make(graph_name, nodes, inp_shape, out_shape, inits):
    g = helper.make_graph(nodes, graph_name, [vi("x", inp_shape)], [vi("y", out_shape)],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="convpca-make_tiny")
    m.ir_version = IR_VERSION
    return m


def conv_pad_stride(rng):
    w1, b1, w2 = rnd(rng, 8, 3, 3, 3), rnd(rng, 8), rnd(rng, 6, 8, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2",
                         kernel_shape=[3, 3], dilations=[2, 2]),
    ]
    # 9 -> (9+2-3)/2+1 = 5 -> 5-2*(3-1) = 1
    return make("conv_pad_stride", nodes, ["N", 3, 9, 9], ["N", 6, 1, 1],
                [init("w1", w1), init("b1", b1), init("w2", w2)])


def conv1d(rng):
    w, b = rnd(rng, 6, 4, 5), rnd(rng, 6)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv1d",
                              kernel_shape=[5], pads=[2, 2])]
    return make("conv1d", nodes, ["N", 4, 20], ["N", 6, 20], [init("w", w), init("b", b)])


def conv3d(rng):
    w, b = rnd(rng, 5, 2, 3, 3, 3), rnd(rng, 5)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv3d",
                              kernel_shape=[3, 3, 3])]
    return make("conv3d", nodes, ["N", 2, 5, 6, 7], ["N", 5, 3, 4, 5], [init("w", w), init("b", b)])


def grouped(rng):
    w, b = rnd(rng, 8, 2, 3, 3), rnd(rng, 8)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv_grouped",
                              kernel_shape=[3, 3], group=2)]
    return make("grouped", nodes, ["N", 4, 8, 8], ["N", 8, 6, 6], [init("w", w), init("b", b)])


def shared_weight(rng):
    w = rnd(rng, 4, 4, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h1"], name="conv_a",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w"], ["y"], name="conv_b",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    return make("shared_weight", nodes, ["N", 4, 8, 8], ["N", 4, 8, 8], [init("w", w)])


def affine_hardswish(rng):
    """PaddleOCR's idiom: affine blocks as Mul/Add with the constant first and hard-swish as
    x * Clip(x + 3, 0, 6) / 6 around a pointwise, a padded depthwise and a 1x1 Conv."""
    c = lambda name, v: init(name, np.asarray(v, dtype=np.float32))
    inits = [
        init("wa", rnd(rng, 8, 4, 3, 3)), init("ba", rnd(rng, 8)),
        init("wdw", rnd(rng, 8, 1, 3, 3)), init("bdw", rnd(rng, 8)),
        init("wpw", rnd(rng, 6, 8, 1, 1)), init("bpw", rnd(rng, 6)),
        c("sa", [1.7]), c("oa", [0.2]), c("three", 3.0), c("zero", 0.0), c("six", 6.0),
        c("s2", [0.4]), c("o2", [-0.3]),
        init("sdw", (1 + rnd(rng, 8, 1, 1)).astype(np.float32)), init("odw", rnd(rng, 1, 8, 1, 1)),
        c("s3", [0.8]), c("o3", [0.1]),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["ya"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["sa", "ya"], ["ya_s"], name="lab_a_mul"),
        helper.make_node("Add", ["ya_s", "oa"], ["ha"], name="lab_a_add"),
        helper.make_node("Add", ["ha", "three"], ["ha3"], name="hs_add"),
        helper.make_node("Clip", ["ha3", "zero", "six"], ["hac"], name="hs_clip"),
        helper.make_node("Mul", ["ha", "hac"], ["ham"], name="hs_mul"),
        helper.make_node("Div", ["ham", "six"], ["hs"], name="hs_div"),
        helper.make_node("Mul", ["s2", "hs"], ["hs_s"], name="lab_2_mul"),
        helper.make_node("Add", ["hs_s", "o2"], ["h2"], name="lab_2_add"),
        helper.make_node("Conv", ["h2", "wdw", "bdw"], ["ydw"], name="conv_dw", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=8),
        helper.make_node("Mul", ["ydw", "sdw"], ["ydw_s"], name="bn_mul"),
        helper.make_node("Add", ["odw", "ydw_s"], ["ydw_o"], name="bn_add"),
        helper.make_node("Relu", ["ydw_o"], ["r"], name="relu"),
        helper.make_node("Mul", ["s3", "r"], ["r_s"], name="lab_3_mul"),
        helper.make_node("Add", ["r_s", "o3"], ["h3"], name="lab_3_add"),
        helper.make_node("Conv", ["h3", "wpw", "bpw"], ["y"], name="conv_pw", kernel_shape=[1, 1]),
    ]
    return make("affine_hardswish", nodes, ["N", 4, 8, 8], ["N", 6, 8, 8], inits)


MODELS = [
    ("conv_pad_stride.onnx", conv_pad_stride),
    ("conv1d.onnx", conv1d),
    ("conv3d.onnx", conv3d),
    ("grouped.onnx", grouped),
    ("shared_weight.onnx", shared_weight),
    ("affine_hardswish.onnx", affine_hardswish),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for fname, fn in MODELS:
        rng = np.random.default_rng(0)  # per-model seed: each file independent of the others
        m = fn(rng)
        onnx.checker.check_model(m, full_check=True)
        inferred = shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        y = [v for v in inferred.graph.output if v.name == "y"][0]
        dims = [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim]
        want = [d.dim_param or d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
        assert dims == want, (fname, dims, want)
        path = os.path.join(args.out, fname)
        onnx.save(m, path)
        print(f"{fname}: y shape {dims}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
