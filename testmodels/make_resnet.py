#!/usr/bin/env python3
"""Export a ResNet-18-shaped network with random weights to ONNX, for benchmarks.

Usage: /usr/bin/python3 testmodels/make_resnet.py --out PATH [--size 112] [--width 64]

The network is ResNet-18 (He et al. 2016, torchvision's resnet18 layout) written out here,
because Debian's python3-torch 1.13 comes without torchvision:

    Conv(3->w,7,stride 2,pad 3) BN ReLU MaxPool(3,stride 2,pad 1)
    4 stages of 2 BasicBlocks with w, 2w, 4w, 8w channels; the first block of stages 2-4 has
    stride 2 and a 1x1 Conv+BN downsample on its shortcut.
    BasicBlock: Conv3x3 BN ReLU Conv3x3 BN, + shortcut, ReLU
    global average pool, Linear(8w -> 1000)

With --width 64 (the default) it has the 11.7 M parameters (about 47 MB) of ResNet-18. The
weights come from torch.manual_seed(0) and PyTorch's default initialisation; the batch-norm
statistics are set to random values (running mean ~ N(0, 0.1), variance ~ U(0.5, 1.5)) so that
they are not the identity. Exported in eval mode, where the exporter folds each BN into its
Conv: the graph holds 20 Conv nodes (with bias), Relu, MaxPool, Add, GlobalAveragePool,
Flatten and Gemm. Opset 13, input `input` [batch, 3, size, size] float32 with a dynamic
batch dimension, output `logits` [batch, 1000]. The same arguments give the same file.
"""
import argparse

import torch
import torch.nn as nn


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.downsample is None else self.downsample(x)
        return self.relu(y + s)


class ResNet18(nn.Module):
    def __init__(self, width=64, classes=1000):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], w
        for i, cout in enumerate([w, 2 * w, 4 * w, 8 * w]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="path of the .onnx file to write")
    ap.add_argument("--size", type=int, default=112, help="input height and width")
    ap.add_argument("--width", type=int, default=64, help="channels of the first stage (64 for ResNet-18)")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = ResNet18(args.width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, args.size, args.size)
    torch.onnx.export(
        model, x, args.out, opset_version=13, do_constant_folding=True,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: ResNet-18 layout, width {args.width}, input 3x{args.size}x{args.size}, {params} parameters")


if __name__ == "__main__":
    main()
