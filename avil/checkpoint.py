"""Atomic per-epoch checkpoints: a run killed at any moment resumes exactly."""
import os
from pathlib import Path
from typing import Optional

import torch

FILENAME = "checkpoint.pt"


def save(directory, state: dict) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically: to a temp file
    first, then rename, so a kill mid-write leaves the previous one intact."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / FILENAME
    tmp = directory / f".{FILENAME}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def load(directory) -> Optional[dict]:
    """The last checkpoint in ``directory``, or None if there is none."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
