"""The training methods, by name: ``avil.METHODS[name]`` is the class."""
from .avil import AlphaVIL
from .base import Method, TrainingError
from .diw import DIW
from .gcs import GCS
from .single_task import SingleTask
from .uniform import Uniform

METHODS = {cls.name: cls for cls in (SingleTask, Uniform, GCS, DIW, AlphaVIL)}

__all__ = ["METHODS", "Method", "TrainingError", "AlphaVIL", "DIW", "GCS", "SingleTask", "Uniform"]
