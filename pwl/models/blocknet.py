"""The shared block structure of PWL: embedder -> block_1..block_N -> head."""
import torch
from torch import nn


class BlockNet(nn.Module):
    """A classifier cut into N swappable blocks; `block_widths[i]` is block i's output channels."""

    def __init__(self, embed: nn.Module, blocks: list[nn.Module], head: nn.Module, block_widths: list[int]):
        super().__init__()
        assert len(blocks) == len(block_widths)
        self.embed = embed
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.block_widths = list(block_widths)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every block, input side first."""
        feats, f = [], self.embed(x)
        for block in self.blocks:
            f = block(f)
            feats.append(f)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.embed(x)
        for block in self.blocks:
            f = block(f)
        return self.head(f)


class GapLinearHead(nn.Module):
    """Global average pooling + linear classifier (the CNN head)."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, f):
        return self.fc(f.mean(dim=(2, 3)))
