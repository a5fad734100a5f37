"""What stops a task-parallel run: ``DistributedError`` and the advice every one of them ends with."""
from ..methods.base import TrainingError

# The end of every DistributedError: a failed step never touches a written checkpoint.
RESUME = ("Every checkpoint in FitConfig.checkpoint_dir (if set) is complete: once the cause is fixed, "
          "continue from the last one with avil.fit(..., resume=True) under torchrun.")


class DistributedError(TrainingError):
    """A task-parallel run cannot go on: another rank failed, died or timed out."""
