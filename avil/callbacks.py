"""Callbacks for ``avil.fit(..., callbacks=[...])``.

A callback is any object with ``on_epoch_end(epoch, history)``, called after
every epoch has been recorded and checkpointed (``epoch``: epochs done,
1-based; ``history``: the run's History so far), and optionally
``on_fit_end(history)``, called when training is over and the best model is
back in place. Under torchrun every process calls them with the same History.

``TensorBoard`` writes what a History records to TensorBoard event files.
"""
import os

import torch.distributed as dist


class TensorBoard:
    """Log each epoch to TensorBoard under ``log_dir`` (``tensorboard --logdir``).

    Scalars, per epoch: ``target/dev`` and ``target/test`` (the target's
    metrics), ``train_loss/<task>``, ``task_weight/<task>``, ``lr/<optimizer>``
    and, under αVIL, ``alpha/<task>`` and the α-step's diagnostics
    ``alpha_step/loss_init`` (the target's dev loss at α_init),
    ``alpha_step/loss_final`` (at the chosen α), ``alpha_step/evaluations``
    and ``alpha_step/seconds``. Under torchrun only rank 0 writes.

    Needs the ``tensorboard`` package (``pip install 'avil[tensorboard]'``);
    without it, making a TensorBoard callback raises ImportError naming it.
    """

    def __init__(self, log_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "avil.callbacks.TensorBoard needs the tensorboard package, which is not installed "
                f"({err}). Fix: pip install 'avil[tensorboard]' (or pip install tensorboard).") from err
        self.log_dir = os.fspath(log_dir)
        self._writer_class = SummaryWriter
        self.writer = None  # made at the first epoch, on the process that writes

    def on_epoch_end(self, epoch: int, history) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        if self.writer is None:
            self.writer = self._writer_class(self.log_dir)
        for tag, value in epoch_scalars(history).items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def on_fit_end(self, history) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def epoch_scalars(history) -> dict:
    """{tag: value} of the History's last epoch, as TensorBoard logs them."""
    last = -1
    scalars = {"target/dev": history.dev[last], "target/test": history.test_per_epoch[last]}
    for group, records in (("train_loss", history.train_loss), ("task_weight", history.task_weights),
                           ("lr", history.lr), ("alpha", history.alphas)):
        if len(records) == history.epochs:
            scalars.update({f"{group}/{name}": value for name, value in records[last].items()})
    if len(history.alpha_step) == history.epochs:
        step = history.alpha_step[last]
        scalars.update({f"alpha_step/{key}": step[key] for key in ("loss_init", "loss_final", "evaluations")})
        scalars["alpha_step/seconds"] = history.alpha_step_seconds[last]
    return scalars
