"""avil: αVIL, α-Variable Importance Learning (arXiv 2405.07769).

    import avil
    history = avil.fit(encoder, tasks, target="left", method="avil",
                       config=avil.FitConfig(epochs=10))
"""
from . import callbacks, distributed, metrics, ops
from .checkpoint import CheckpointError
from .config import FitConfig
from .history import History
from .methods import METHODS, TrainingError
from .ranking import rank_auxiliaries
from .tasks import Task
from .trainer import fit

__all__ = ["CheckpointError", "FitConfig", "History", "METHODS", "Task", "TrainingError", "callbacks", "distributed",
           "fit", "metrics", "ops", "rank_auxiliaries"]
__version__ = "0.1.0"
