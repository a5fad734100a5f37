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
from .tasks import Task
from .trainer import fit

__all__ = ["CheckpointError", "callbacks", "FitConfig", "History", "METHODS", "Task", "TrainingError", "distributed", "fit",
           "metrics", "ops"]
__version__ = "0.1.0"
