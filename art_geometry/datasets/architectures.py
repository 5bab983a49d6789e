"""
Standard image-classification architectures, written here (torchvision is not a dependency), each in the form
its usual code takes, so the geometry metrics are exercised on the ways real networks apply ReLU:

- :class:`ResNet18`: the CIFAR-style ResNet-18 of most CIFAR code (He et al., CVPR 2016), ReLU as
  ``F.relu`` calls, BatchNorm and projection shortcuts;
- :class:`TorchvisionResNet18`: torchvision's layout (module and ``state_dict`` names), one
  ``nn.ReLU(inplace=True)`` per block called twice per forward;
- :class:`WideResNet`: WRN-16-4 by default (Zagoruyko & Komodakis, BMVC 2016), pre-activation blocks with one
  ``nn.ReLU(inplace=True)`` module per use;
- :class:`VGG11BN`: VGG-11 with BatchNorm (Simonyan & Zisserman, ICLR 2015), torchvision's layout.

Every model takes ``input_shape`` ``(C, H, W)``, ``nb_classes`` and a base ``width`` (64 for the ResNets and VGG,
16 for the WideResNet: the published sizes) that scales every layer, so tests run them at ``width=4``. Inputs with
both sides at least 64 (ImageNet's 3 x 224 x 224) get the ImageNet stem of the ResNets (7 x 7 stride-2 convolution
and max pooling) and VGG's ImageNet head (7 x 7 average pooling, two hidden layers of ``64 * width`` units);
smaller inputs (CIFAR's 3 x 32 x 32) the 3 x 3 stride-1 stem and a linear head. Every model ends in an
``nn.Linear`` returning logits.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from art_geometry.core.validation import check_positive_int

__all__ = ["ResNet18", "TorchvisionResNet18", "WideResNet", "VGG11BN"]

#: Input side from which the ImageNet stem / head is used.
_IMAGENET_SIDE = 64


def _image_shape(input_shape: Sequence[int], minimum: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1 or min(shape[1:]) < minimum:
        raise ValueError(f"input_shape must be (C, H, W) with H, W >= {minimum}, got {tuple(input_shape)}")
    return shape  # type: ignore[return-value]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def _initialise(model: nn.Module) -> None:
    """He initialisation of the convolutions (fan-out), BatchNorm at identity, as torchvision initialises."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with ``F.relu`` (CIFAR code's block)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential() if stride == 1 and cin == cout else _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _TorchvisionBlock(nn.Module):
    """torchvision's ``BasicBlock``: one ``nn.ReLU(inplace=True)`` called twice, the shortcut added in place."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class _ResNet18(nn.Module):
    """
    The ResNet-18 body shared by the two styles: stem, four stages of two blocks (widths ``w, 2w, 4w, 8w``, the
    last three starting with stride 2), global average pooling and ``fc``.

    :param block: The block class.
    :param relu: The stem's ``nn.ReLU`` module, or ``None`` for an ``F.relu`` call.
    """

    def __init__(
        self, input_shape: Sequence[int], nb_classes: int, width: int, block: type[nn.Module], relu: nn.Module | None
    ):
        super().__init__()
        c, h, w = _image_shape(input_shape, 8)
        width = check_positive_int(width, "width")
        nb_classes = check_positive_int(nb_classes, "nb_classes")
        imagenet = min(h, w) >= _IMAGENET_SIDE
        self.conv1 = nn.Conv2d(c, width, 7, stride=2, padding=3, bias=False) if imagenet else _conv3x3(c, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = relu
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        cin = width
        for i in range(4):
            cout = width * 2**i
            stride = 1 if i == 0 else 2
            self.add_module(f"layer{i + 1}", nn.Sequential(block(cin, cout, stride), block(cout, cout, 1)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, nb_classes)
        _initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = self.maxpool(F.relu(x) if self.relu is None else self.relu(x))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet18(_ResNet18):
    """
    CIFAR-style ResNet-18 (He et al., CVPR 2016): every ReLU an ``F.relu`` call (17 of them), BatchNorm,
    1 x 1 projection shortcuts where the shape changes; 11.2 M parameters at ``width=64`` on 3 x 32 x 32.

    :param input_shape: ``(C, H, W)``, sides at least 8 (64 and more: ImageNet stem).
    :param nb_classes: Number of classes.
    :param width: Channels of the first stage (64 in the paper).
    """

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), nb_classes: int = 10, width: int = 64):
        super().__init__(input_shape, nb_classes, width, _BasicBlock, None)


class TorchvisionResNet18(_ResNet18):
    """
    ResNet-18 in torchvision's layout (module names and ``state_dict`` keys: ``layer1.0.conv1``,
    ``layer2.0.downsample.0``, ``fc``; at ``width=64`` on 3 x 224 x 224 torchvision's weights load into it): the stem
    and each block own one ``nn.ReLU(inplace=True)``, a block's called twice per forward.

    :param input_shape: ``(C, H, W)``, sides at least 8 (64 and more: ImageNet stem).
    :param nb_classes: Number of classes.
    :param width: Channels of the first stage (64 in torchvision).
    """

    def __init__(self, input_shape: Sequence[int] = (3, 224, 224), nb_classes: int = 1000, width: int = 64):
        super().__init__(input_shape, nb_classes, width, _TorchvisionBlock, nn.ReLU(inplace=True))


class _WideBlock(nn.Module):
    """Pre-activation block: ``conv(relu(bn(conv(relu(bn(x)))))) + shortcut``, one ``nn.ReLU`` module per use."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    """
    Wide residual network WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis, BMVC 2016): a 3 x 3 stem of
    ``width`` channels, three stages of ``(depth - 4) / 6`` pre-activation blocks of ``width * widen_factor * (1, 2,
    4)`` channels (strides 1, 2, 2), BatchNorm-ReLU, global average pooling and ``fc``; WRN-16-4 (2.7 M parameters)
    by default.

    :param input_shape: ``(C, H, W)``, sides at least 4.
    :param nb_classes: Number of classes.
    :param depth: ``6 n + 4``.
    :param widen_factor: ``k``.
    :param width: Channels of the stem (16 in the paper).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        nb_classes: int = 10,
        depth: int = 16,
        widen_factor: int = 4,
        width: int = 16,
    ):
        super().__init__()
        c, _, _ = _image_shape(input_shape, 4)
        depth = check_positive_int(depth, "depth")
        widen_factor = check_positive_int(widen_factor, "widen_factor")
        width = check_positive_int(width, "width")
        nb_classes = check_positive_int(nb_classes, "nb_classes")
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6 n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        self.conv1 = _conv3x3(c, width)
        cin = width
        for i in range(3):
            cout = width * widen_factor * 2**i
            first = _WideBlock(cin, cout, 1 if i == 0 else 2)
            self.add_module(f"block{i + 1}", nn.Sequential(first, *(_WideBlock(cout, cout, 1) for _ in range(n - 1))))
            cin = cout
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, nb_classes)
        _initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.relu(self.bn(x))), 1))


#: VGG-11's convolution widths at ``width=64`` ("M": 2 x 2 max pooling), configuration A of the paper.
_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11BN(nn.Module):
    """
    VGG-11 with BatchNorm (Simonyan & Zisserman, ICLR 2015, configuration A), torchvision's layout: ``features``
    (conv-BN-``nn.ReLU(inplace=True)``, five max poolings), then on inputs of side 64 and more ``avgpool`` to 7 x 7
    and ``classifier`` (two hidden layers of ``64 * width`` units with ReLU and dropout, 4096 at ``width=64``), on
    smaller inputs global average pooling and one linear ``classifier``.

    :param input_shape: ``(C, H, W)``, sides at least 32 (five poolings).
    :param nb_classes: Number of classes.
    :param width: Channels of the first convolution (64 in the paper); every layer scales with it.
    """

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), nb_classes: int = 10, width: int = 64):
        super().__init__()
        c, h, w = _image_shape(input_shape, 32)
        width = check_positive_int(width, "width")
        nb_classes = check_positive_int(nb_classes, "nb_classes")
        layers: list[nn.Module] = []
        cin = c
        for v in _VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
                continue
            cout = int(v) * width // 64
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        if min(h, w) >= _IMAGENET_SIDE:
            hidden = 64 * width
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier: nn.Module = nn.Sequential(
                nn.Linear(cin * 49, hidden), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(hidden, nb_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(cin, nb_classes)
        _initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
