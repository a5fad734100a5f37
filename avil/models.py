"""Encoders and the multitask model (shared encoder + one head per task)."""
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


class TextEncoder(nn.Module):
    """A pretrained Hugging Face transformer (``AutoModel.from_pretrained``) as
    a sentence encoder: x, a dict with "input_ids" (B, L), "attention_mask"
    (B, L) and optionally "token_type_ids" (B, L) -> features (B, hidden).

    pooling: "mean" (default) averages the last hidden states over the tokens
        whose attention mask is 1, so padding never changes an example's
        features (how all-MiniLM-L6-v2 was trained); "cls" takes the first
        token's state.
    A local folder (e.g. ``avil.tasks.nlu.minilm_path()``) never touches the
    Hub; a Hub name (``avil.tasks.nlu.MODEL``) needs network the first time.
    """

    def __init__(self, path_or_name, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        from transformers import AutoModel  # heavy; only text users pay for it

        self.model = AutoModel.from_pretrained(str(path_or_name))
        self.pooling = pooling
        self.out_features = self.model.config.hidden_size
        # from_pretrained returns eval mode; a new module is in training mode,
        # and the trainer's .train()/.eval() then switch dropout consistently.
        self.train()

    def forward(self, x):
        # Only the keys the tokenizer made; RoBERTa has no token_type_ids.
        inputs = {k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in x}
        states = self.model(**inputs).last_hidden_state  # (B, L, hidden)
        if self.pooling == "cls":
            return states[:, 0]  # (B, hidden)
        mask = x["attention_mask"].unsqueeze(-1).to(states.dtype)  # (B, L, 1)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, hidden)
