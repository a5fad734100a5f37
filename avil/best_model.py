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
    atomic and checksummed like every checkpoint) right after the epoch's
    checkpoint, which records the file's epoch and digest (``record``): a
    resume loads only the file the checkpoint names, so a file of another run
    or epoch is refused, and a kill between the two writes leaves a pair that
    still agrees (the checkpoint's own state is then the best)."""

    def __init__(self, keep: bool):
        self.keep = keep  # hold the state in memory, to load it into the model at the end
        self.epoch: Optional[int] = None
        self.data: Optional[torch.Tensor] = None  # (N,), a copy of FlatParameters.data
        self.other_buffers: dict = {}
        self.digest: Optional[str] = None  # of ``state()``, as the best-model file holds it

    def update(self, flat: FlatParameters, history: History, directory) -> bool:
        """Take this epoch's state if it is the best so far; True if taken."""
        if history.best_epoch != history.epochs or not (self.keep or directory is not None):
            return False
        self.take(flat, history.epochs)
        self.digest = checkpoint.digest(self.state()) if directory is not None else None
        return True

    def state(self) -> dict:
        return {"epoch": self.epoch, "flat": self.data.cpu(), "other_buffers": self.other_buffers}

    def record(self) -> Optional[dict]:
        """What the checkpoint records of the best-model file: its epoch and digest."""
        return None if self.epoch is None else {"epoch": self.epoch, "digest": self.digest}

    def write(self, directory, parallel) -> None:
        """Write the state to the best-model file, on one process of a run (``parallel.once``)."""
        state = self.state()
        parallel.once(f"writing the best model (epoch {self.epoch})",
                      lambda: checkpoint.write(Path(directory) / checkpoint.BEST_FILENAME, state))

    def take(self, flat: FlatParameters, epoch: int) -> None:
        self.epoch = epoch
        if self.data is None:
            self.data = flat.data.detach().clone()
        else:
            self.data.copy_(flat.data)
        self.other_buffers = flat.other_buffers_state()

    def restore(self, flat: FlatParameters, history: History, directory, record: Optional[dict]) -> None:
        """After a resume (``flat`` holds the checkpoint's state): the best
        epoch's state from the checkpoint itself when its last epoch is the
        best, else from the best-model file the checkpoint's ``record`` names."""
        if history.best_epoch is None:
            return
        if history.best_epoch == history.epochs:
            self.take(flat, history.epochs)
            self.digest = checkpoint.digest(self.state())
            return
        path = Path(directory) / checkpoint.BEST_FILENAME
        fix = "Fix: restore the file, or resume with FitConfig(load_best_model_at_end=False)."
        if record is None or record["epoch"] != history.best_epoch:
            raise checkpoint.CheckpointError(
                f"the checkpoint in {directory} names no best-model file for its best dev epoch "
                f"{history.best_epoch}, so the model of that epoch cannot be given back. {fix}")
        state = checkpoint.load(directory, checkpoint.BEST_FILENAME, expected_digest=record["digest"])
        if state is None:
            raise checkpoint.CheckpointError(
                f"{path} is missing, but the checkpoint's best dev epoch ({history.best_epoch}) is kept there. {fix}")
        self.epoch, self.digest = state["epoch"], record["digest"]
        self.data = state["flat"].to(flat.data.device)
        self.other_buffers = state["other_buffers"]

    def load_into(self, flat: FlatParameters) -> None:
        if self.epoch is not None:
            flat.load_(self.data)
            flat.load_other_buffers_(self.other_buffers)
