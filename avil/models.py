"""The multitask model (shared encoder + one head per task) and the image and
toy encoders. The text encoder is ``avil.tasks.nlu.TextEncoder``."""
from typing import Dict

from torch import nn
import torch.nn.functional as F


class MultiTaskModel(nn.Module):
    """A shared encoder and one head per task: ``model(x, task) = head_task(encoder(x))``.

    Parameters are registered encoder first, then the heads in task order, so in
    the flat buffer (avil/flat.py) the shared parameters are one leading range.
    """

    def __init__(self, encoder: nn.Module, heads: Dict[str, nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    def features(self, x):
        return self.encoder(x)

    def forward(self, x, task: str):
        return self.heads[task](self.encoder(x))


class LeNet(nn.Module):
    """The MultiMNIST encoder of Sener & Koltun (NeurIPS 2018): conv 1→10 5×5,
    max-pool, conv 10→20 5×5, max-pool, FC 320→50. Input (B, 1, 28, 28) → (B, 50)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc = nn.Linear(320, 50)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 10, 12, 12)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # (B, 20, 4, 4)
        return F.relu(self.fc(x.flatten(1)))  # (B, 50)


class MLP(nn.Module):
    """A small ReLU MLP encoder (the toy suite's)."""

    def __init__(self, in_features: int, hidden: int = 32, depth: int = 2):
        super().__init__()
        layers, width = [], in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers)
        self.out_features = hidden

    def forward(self, x):
        return self.net(x)
