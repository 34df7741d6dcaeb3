"""MobileNetV2-style network: 3x3 stem -> N stages of inverted residuals -> 1x1 conv + GAP + linear head.
A PWL block is one stage; its output (a linear bottleneck, no activation) is what the converters map."""
from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from .blocknet import BlockNet, GapLinearHead
from .common import FamilyConfig
from .registry import register


class MobileNetConfig(FamilyConfig):
    family: Literal["mobilenet"] = "mobilenet"
    stem_width: int = 32
    # MobileNetV2's stages (channels, repeats, first stride), stride 1 where CIFAR-size inputs need it (stem, stage 2)
    widths: tuple[int, ...] = (16, 24, 32, 64, 96, 160, 320)
    depths: tuple[int, ...] = (1, 2, 3, 4, 3, 3, 1)
    strides: tuple[int, ...] = (1, 1, 2, 2, 1, 2, 1)
    expand_ratio: int = Field(6, ge=1)  # hidden width of an inverted residual = expand_ratio x its input width
    head_width: int = Field(1280, ge=1)  # the 1x1 conv before pooling

    @model_validator(mode="after")
    def _strides(self):
        if len(self.strides) != len(self.depths) or any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides {list(self.strides)} must give 1 or 2 for each of the {len(self.depths)} "
                             "blocks")
        return self

    def check_input(self, image_size: int) -> None:
        down = 2 ** self.strides.count(2)
        if image_size % down:
            raise ValueError(f"image_size {image_size} is not divisible by {down} (the product of strides)")

    def check_student(self, student: "MobileNetConfig") -> None:
        if student.strides != self.strides:  # features must meet the converters at the same resolution
            raise ValueError(f"mobilenet teacher and student need the same strides ({list(self.strides)} vs "
                             f"{list(student.strides)})")


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride) -> 1x1 linear projection; identity shortcut when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = cin * expand_ratio
        expand = [conv_bn(cin, hidden, 1)] if expand_ratio != 1 else []
        self.body = nn.Sequential(*expand, conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class ConvHead(nn.Module):
    """MobileNetV2's head: 1x1 conv to head_width, then global average pooling and a linear classifier."""

    def __init__(self, cin: int, width: int, num_classes: int):
        super().__init__()
        self.conv = conv_bn(cin, width, 1)
        self.classifier = GapLinearHead(width, num_classes)

    def forward(self, f):
        return self.classifier(self.conv(f))


@register("mobilenet", MobileNetConfig)
def build_mobilenet(cfg: MobileNetConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    blocks, cin = [], cfg.stem_width
    for width, depth, stride in zip(cfg.widths, cfg.depths, cfg.strides):
        blocks.append(nn.Sequential(*[InvertedResidual(cin if j == 0 else width, width, stride if j == 0 else 1,
                                                       cfg.expand_ratio) for j in range(depth)]))
        cin = width
    return BlockNet(conv_bn(in_chans, cfg.stem_width, 3), blocks, ConvHead(cin, cfg.head_width, num_classes),
                    list(cfg.widths))
