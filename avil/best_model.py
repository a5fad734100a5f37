"""The model of the best dev epoch, given back when ``avil.fit`` returns
(``FitConfig.load_best_model_at_end``) and kept beside the checkpoint."""
from pathlib import Path
from typing import Optional

import torch

from . import checkpoint
from .flat import FlatParameters
from .history import History


class BestModel:
    """The model's state (θ and float buffers, and the other buffers) at the
    best dev epoch so far: the epoch ``History.test`` reports. With a
    checkpoint directory it is also written there (``checkpoint.BEST_FILENAME``,
    atomic and checksummed like every checkpoint) after the epoch's checkpoint,
    so a kill between the two leaves a pair a resume reads consistently."""

    def __init__(self, keep: bool):
        self.keep = keep  # hold the state in memory, to load it into the model at the end
        self.epoch: Optional[int] = None
        self.data: Optional[torch.Tensor] = None  # (N,), a copy of FlatParameters.data
        self.other_buffers: dict = {}

    def update(self, flat: FlatParameters, history: History, directory, parallel) -> None:
        """Keep this epoch's state if it is the best so far (and write it, on one
        process of a run, where ``parallel.once`` runs it)."""
        if history.best_epoch != history.epochs or not (self.keep or directory is not None):
            return
        self.take(flat, history.epochs)
        if directory is not None:
            state = {"epoch": self.epoch, "flat": self.data.cpu(), "other_buffers": self.other_buffers}
            parallel.once(f"writing the best model (epoch {self.epoch})",
                          lambda: checkpoint.write(Path(directory) / checkpoint.BEST_FILENAME, state))

    def take(self, flat: FlatParameters, epoch: int) -> None:
        self.epoch = epoch
        if self.data is None:
            self.data = flat.data.detach().clone()
        else:
            self.data.copy_(flat.data)
        self.other_buffers = flat.other_buffers_state()

    def restore(self, flat: FlatParameters, history: History, directory) -> None:
        """After a resume (``flat`` holds the checkpoint's state): the best
        epoch's state from the checkpoint itself when its last epoch is the
        best, else from the best-model file."""
        if history.best_epoch is None:
            return
        if history.best_epoch == history.epochs:
            self.take(flat, history.epochs)
            return
        state = checkpoint.load(directory, checkpoint.BEST_FILENAME)
        if state is None or state["epoch"] != history.best_epoch:
            found = "is missing" if state is None else f"holds epoch {state['epoch']}"
            raise checkpoint.CheckpointError(
                f"{Path(directory) / checkpoint.BEST_FILENAME} {found}, but the checkpoint's best dev epoch is "
                f"{history.best_epoch}: the model of that epoch cannot be given back. Fix: restore the file, "
                "or resume with FitConfig(load_best_model_at_end=False).")
        self.epoch = state["epoch"]
        self.data = state["flat"].to(flat.data.device)
        self.other_buffers = state["other_buffers"]

    def load_into(self, flat: FlatParameters) -> None:
        if self.epoch is not None:
            flat.load_(self.data)
            flat.load_other_buffers_(self.other_buffers)
