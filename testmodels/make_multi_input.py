#!/usr/bin/python3
"""Writes the models of several inputs that convpca's tests feed from .npz files, into
testmodels/multi/ (or --out DIR). Deterministic: the same bytes each time with the same
python3-torch and python3-onnx.

image_class.onnx (python3-torch, opset 13): an image and a class id, the class's embedding
added to the image features.
    x [N,3,16,16] float32, cls [N] int64
    conv1 Conv 3->8 k3 p1, Relu, + Embedding(5, 8)(cls) per channel,
    conv2 Conv 8->16 k3 s2 p1, Relu, mean over H and W, fc Gemm 16->4
    -> y [N,4]

dtypes.onnx (onnx helper API, opset 13): one input of each other element type convpca feeds.
    x [N,3,8,8] float16, mask [N,1,8,8] bool, k [N,1] int32, ids [N] int64
    h = Conv(Cast(x)) 3->6 k3 p1 (+bias) * Cast(mask) + Cast(k) + Gather(E[5,6], ids)
    y = Conv(Relu(h)) 6->4 k3 (no bias)          -> y [N,4,6,6]

Shapes are inferred and stored as value_info, so that the models need no run to be inspected.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def image_class(path):
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.emb = nn.Embedding(5, 8)
            self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16, 4)

        def forward(self, x, cls):
            h = torch.relu(self.conv1(x))
            h = h + self.emb(cls)[:, :, None, None]
            h = torch.relu(self.conv2(h))
            return self.fc(h.mean((2, 3)))

    net = Net().eval()
    x = torch.randn(2, 3, 16, 16)
    cls = torch.tensor([0, 3])
    torch.onnx.export(
        net, (x, cls), path, opset_version=13, input_names=["x", "cls"], output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "cls": {0: "N"}, "y": {0: "N"}}, do_constant_folding=True,
    )
    m = onnx.load(path)
    m.producer_version = ""  # keep the bytes independent of the torch build
    return m


def dtypes():
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)
    N = "N"
    inits = [
        numpy_helper.from_array(w(6, 3, 3, 3), "w1"),
        numpy_helper.from_array(w(6), "b1"),
        numpy_helper.from_array(w(4, 6, 3, 3), "w2"),
        numpy_helper.from_array(w(5, 6), "emb"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "hw"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT, name="cast_x"),
        helper.make_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT, name="cast_mask"),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT, name="cast_k"),
        helper.make_node("Conv", ["xf", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Mul", ["c1", "mf"], ["masked"], name="mul_mask"),
        helper.make_node("Unsqueeze", ["kf", "hw"], ["k4"], name="unsq_k"),
        helper.make_node("Add", ["masked", "k4"], ["plus_k"], name="add_k"),
        helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0, name="gather"),
        helper.make_node("Unsqueeze", ["e", "hw"], ["e4"], name="unsq_e"),
        helper.make_node("Add", ["plus_k", "e4"], ["h"], name="add_e"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2"),
    ]
    g = helper.make_graph(
        nodes, "dtypes",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT16, [N, 3, 8, 8]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, [N, 1, 8, 8]),
            helper.make_tensor_value_info("k", TensorProto.INT32, [N, 1]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [N]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N, 4, 6, 6])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8, producer_name="make_multi_input.py")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi"))
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, make in [("image_class.onnx", lambda path: image_class(path)), ("dtypes.onnx", lambda path: dtypes())]:
        path = os.path.join(a.out, name)
        m = make(path)
        m = onnx.shape_inference.infer_shapes(m)
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, path)
        print(path, [(i.name, i.type.tensor_type.elem_type) for i in m.graph.input],
              [n.op_type for n in m.graph.node])


if __name__ == "__main__":
    main()
