"""A small ResNet (He et al. 2016) built from fastconv layers: basic blocks with batch norm and residual adds.

The blocks use torchvision's attribute names (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``), so the
state dict of the same network written with ``torch.nn`` loads with ``load_state_dict`` and the other way round::

    stem:    Conv2d(in, w, 3, padding=1, bias=False) - BatchNorm2d - ReLU
    layer1:  BasicBlock(w -> w)                           (full resolution)
    layer2:  BasicBlock(w -> 2w, stride 2)                 (1/2)
    layer3:  BasicBlock(2w -> 4w, stride 2)                (1/4)
    head:    AdaptiveAvgPool2d(1) - Flatten - Linear(4w, classes)

A block computes ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, the shortcut a 1x1 stride-2
convolution with batch norm where the shape changes.  :func:`fastconv.examples.digits.train` trains it on the
digits with AdamW and a cosine learning-rate schedule (``fastconv train --model resnet``).
"""
from .. import nn

__all__ = ["BasicBlock", "ResNet", "resnet_digits", "torch_resnet"]


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (torchvision's ``BasicBlock``)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))
        else:
            self.downsample = None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """Stem, three stages of ``blocks`` basic blocks each (widths ``w, 2w, 4w``, the last two halving the
    resolution), global average pooling and a linear classifier."""

    def __init__(self, in_channels=1, num_classes=10, width=16, blocks=(1, 1, 1)):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        planes = width
        for i, n in enumerate(blocks):
            out = width * 2 ** i
            layers = [BasicBlock(planes, out, 1 if i == 0 else 2)] + [BasicBlock(out, out) for _ in range(n - 1)]
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*layers))
            planes = out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(planes, num_classes)
        self.num_stages = len(blocks)

    def fuse_groups(self):
        """The ``[conv, bn(, relu)]`` name lists :func:`fastconv.nn.utils.fuse_modules` folds for inference: the
        stem with its ReLU, every block's two conv/BN pairs and its shortcut (the blocks' ReLU is shared by two
        places, so it stays a separate layer)."""
        groups = [["conv1", "bn1", "relu"]]
        for i in range(self.num_stages):
            for j, block in enumerate(getattr(self, "layer%d" % (i + 1))):
                p = "layer%d.%d." % (i + 1, j)
                groups += [[p + "conv1", p + "bn1"], [p + "conv2", p + "bn2"]]
                if block.downsample is not None:
                    groups.append([p + "downsample.0", p + "downsample.1"])
        return groups

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, "layer%d" % (i + 1))(x)
        return self.fc(self.flatten(self.avgpool(x)))


def resnet_digits(width=8, blocks=(1, 1, 1), num_classes=10):
    """The ResNet used for the digits: one input channel, ``width`` channels in the first stage."""
    return ResNet(1, num_classes, width, blocks)


def torch_resnet(in_channels=1, num_classes=10, width=8, blocks=(1, 1, 1)):
    """The same network written with ``torch.nn`` (needs torch): same attribute names, so state dicts copy
    across in both directions -- the twin the parity tests and ``bench/bench_resnet.py`` compare against."""
    import torch

    tnn = torch.nn

    class TorchBasicBlock(tnn.Module):
        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = (tnn.Sequential(tnn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              tnn.BatchNorm2d(planes)) if stride != 1 or in_planes != planes
                               else None)

        forward = BasicBlock.forward

    class TorchResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(width)
            self.relu = tnn.ReLU(inplace=True)
            planes = width
            for i, n in enumerate(blocks):
                out = width * 2 ** i
                layers = [TorchBasicBlock(planes, out, 1 if i == 0 else 2)]
                layers += [TorchBasicBlock(out, out) for _ in range(n - 1)]
                setattr(self, "layer%d" % (i + 1), tnn.Sequential(*layers))
                planes = out
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.flatten = tnn.Flatten()
            self.fc = tnn.Linear(planes, num_classes)
            self.num_stages = len(blocks)

        forward = ResNet.forward

    return TorchResNet()
