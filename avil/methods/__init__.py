"""The training methods, by name: ``avil.METHODS[name]`` is the class."""
from .avil import AlphaVIL
from .base import Method, TrainingError
from .single_task import SingleTask
from .uniform import Uniform

METHODS = {cls.name: cls for cls in (SingleTask, Uniform, AlphaVIL)}

__all__ = ["METHODS", "Method", "TrainingError", "AlphaVIL", "SingleTask", "Uniform"]
