"""VGG as N stages of (conv3x3-BN-ReLU) x depth + 2x2 max-pool; head = GAP + linear."""
from torch import nn

from ..schema.families import VGGConfig
from .blocknet import BlockNet, GapLinearHead
from .registry import register


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register("vgg")
def build_vgg(cfg: VGGConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    blocks, cin = [], in_chans
    for width, depth in zip(cfg.widths, cfg.depths):
        layers = [conv_bn_relu(cin if i == 0 else width, width) for i in range(depth)]
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
        cin = width
    return BlockNet(nn.Identity(), blocks, GapLinearHead(cin, num_classes), list(cfg.widths))
