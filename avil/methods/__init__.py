"""The training methods, by name: ``avil.METHODS[name]`` is the class."""
from .avil import AlphaVIL
from .base import EpochResult, Method, TrainingError
from .diw import DIW
from .gcs import GCS
from .single_task import SingleTask
from .static import Static
from .uniform import Uniform

METHODS = {cls.name: cls for cls in (SingleTask, Uniform, Static, GCS, DIW, AlphaVIL)}

__all__ = ["METHODS", "EpochResult", "Method", "TrainingError", "AlphaVIL", "DIW", "GCS", "SingleTask", "Static", "Uniform"]
