"""VGG as N stages of (conv3x3-BN-ReLU) x depth + 2x2 max-pool; head = GAP + linear."""
from typing import Literal

from torch import nn

from .blocknet import BlockNet, GapLinearHead
from .common import FamilyConfig
from .registry import register


class VGGConfig(FamilyConfig):
    family: Literal["vgg"] = "vgg"
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    depths: tuple[int, ...] = (2, 2, 3, 3, 3)  # VGG-16 layout; the published student uses 1 per stage

    def check_input(self, image_size: int) -> None:
        if image_size % 2 ** self.num_blocks:
            raise ValueError(f"image_size {image_size} is not divisible by 2^{self.num_blocks} "
                             "(VGG max-pools once per block)")


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register("vgg", VGGConfig)
def build_vgg(cfg: VGGConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    blocks, cin = [], in_chans
    for width, depth in zip(cfg.widths, cfg.depths):
        layers = [conv_bn_relu(cin if i == 0 else width, width) for i in range(depth)]
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
        cin = width
    return BlockNet(nn.Identity(), blocks, GapLinearHead(cin, num_classes), list(cfg.widths))
