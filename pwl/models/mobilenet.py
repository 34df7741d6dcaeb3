"""MobileNetV2-style network: 3x3 stem -> N stages of inverted residuals -> 1x1 conv + GAP + linear head.
A PWL block is one stage; its output (a linear bottleneck, no activation) is what the converters map."""
from torch import nn

from ..schema.families import MobileNetConfig
from .blocknet import BlockNet, GapLinearHead
from .registry import register


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


@register("mobilenet")
def build_mobilenet(cfg: MobileNetConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    blocks, cin = [], cfg.stem_width
    for width, depth, stride in zip(cfg.widths, cfg.depths, cfg.strides):
        blocks.append(nn.Sequential(*[InvertedResidual(cin if j == 0 else width, width, stride if j == 0 else 1,
                                                       cfg.expand_ratio) for j in range(depth)]))
        cin = width
    return BlockNet(conv_bn(in_chans, cfg.stem_width, 3), blocks, ConvHead(cin, cfg.head_width, num_classes),
                    list(cfg.widths))
