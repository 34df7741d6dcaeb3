"""CIFAR-style ResNet: 3x3 stem (no max-pool) + N stages of basic blocks; stride 2 from stage 2 on."""
import torch.nn.functional as F
from torch import nn

from ..schema.families import ResNetConfig
from .blocknet import BlockNet, GapLinearHead
from .registry import register


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


@register("resnet")
def build_resnet(cfg: ResNetConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    stem = nn.Sequential(nn.Conv2d(in_chans, cfg.stem_width, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cfg.stem_width), nn.ReLU(inplace=True))
    blocks, cin = [], cfg.stem_width
    for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths)):
        stride = 1 if i == 0 else 2
        blocks.append(nn.Sequential(*[BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1)
                                      for j in range(depth)]))
        cin = width
    return BlockNet(stem, blocks, GapLinearHead(cin, num_classes), list(cfg.widths))
