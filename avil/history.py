"""History: what a run measured, epoch by epoch, as plain JSON-able data."""
import json
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Dict, List, Optional

from . import io

# Version of the dict/JSON layout (the "format_version" key). 1: files written
# before the key existed; 2: adds "resumes". A field added with a default
# needs no new version: older files simply lack it and get the default.
FORMAT_VERSION = 2


@dataclass
class History:
    """The record of one ``avil.fit`` run.

    task_weights: one dict {task: weight} per epoch (the weights after the epoch).
    alphas: one dict {task: α} per epoch (αVIL only; empty for other methods).
    dev: the target's dev metric after each epoch.
    test_per_epoch: the target's test metric after each epoch.
    test: the target's test metric at the epoch with the best dev metric
        (the first such epoch on ties); best_epoch is that epoch, 1-based.
    train_loss: one dict {task: mean training loss} per epoch.
    lr: one dict per epoch, {optimizer: the learning rate of its last step in
        that epoch} ("model" for the interleaved methods; one per task under
        αVIL, each with its own schedule): FitConfig.lr_scheduler_type at work.
    alpha_step: one dict per epoch (αVIL only) of what the α-step did:
        loss_init / loss_final (target dev loss at α_init / at the chosen α),
        iterations, evaluations, on_bound (tasks whose α ended on a bound),
        converged (avil.alpha_step.AlphaStep); its wall time goes to
        alpha_step_seconds.
    epoch_seconds, alpha_step_seconds: wall time per epoch and of its α-step
        (not compared by ==: timings differ between otherwise identical runs).
    resumes: one dict per resume, ``{"epoch": epochs done when it resumed,
        "changed": {config field: [before, after]}}`` for the FitConfig fields
        the resumed call changed (e.g. a lower lr after a NaN loss); ``config``
        holds the latest values. Not compared by ==, so a run resumed without
        changes equals an uninterrupted one.

    ``to_json``/``from_json`` (and ``to_dict``/``from_dict``) round-trip it; the
    dict carries ``format_version``. Reading tolerates what older versions
    write (a missing field gets its default; an unknown key is ignored with a
    warning) and refuses a newer ``format_version``, naming the file.
    """

    method: str
    target: str
    tasks: List[str]
    seed: int
    config: Dict = field(default_factory=dict)
    task_weights: List[Dict[str, float]] = field(default_factory=list)
    alphas: List[Dict[str, float]] = field(default_factory=list)
    dev: List[float] = field(default_factory=list)
    test_per_epoch: List[float] = field(default_factory=list)
    train_loss: List[Dict[str, float]] = field(default_factory=list)
    lr: List[Dict[str, float]] = field(default_factory=list)
    alpha_step: List[Dict] = field(default_factory=list)
    test: Optional[float] = None
    best_epoch: Optional[int] = None
    epoch_seconds: List[float] = field(default_factory=list, compare=False)
    alpha_step_seconds: List[float] = field(default_factory=list, compare=False)
    resumes: List[Dict] = field(default_factory=list, compare=False)

    def record(self, *, task_weights, alphas, train_loss, dev, test, seconds, lr=None, alpha_step=None) -> None:
        """Append one epoch and update the best-dev test figure."""
        self.task_weights.append(dict(task_weights))
        if lr is not None:
            self.lr.append(dict(lr))
        if alphas:
            self.alphas.append(dict(alphas))
        if alpha_step:
            step = dict(alpha_step)
            self.alpha_step_seconds.append(float(step.pop("seconds")))
            self.alpha_step.append(step)
        self.train_loss.append(dict(train_loss))
        self.dev.append(float(dev))
        self.test_per_epoch.append(float(test))
        self.epoch_seconds.append(float(seconds))
        best = max(range(len(self.dev)), key=lambda i: (self.dev[i], -i))
        self.best_epoch = best + 1
        self.test = self.test_per_epoch[best]

    @property
    def epochs(self) -> int:
        return len(self.dev)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "History.from_dict") -> "History":
        """The History a ``to_dict`` (of this or another version) describes.

        source: where ``d`` came from, for warnings and errors (a file name).
        """
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a dict of History fields, got {type(d).__name__}.")
        d = dict(d)
        version = d.pop("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"{source}: format_version is {version!r}, not an integer. Fix: pass a file written "
                             "by History.to_json.")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{source}: written with History format_version {version!r}, newer than this avil reads "
                f"(format_version {FORMAT_VERSION}). Fix: upgrade avil to read it "
                "(pip install -U avil), or re-create the file with this version.")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            warnings.warn(
                f"{source}: ignoring keys this avil does not know: {unknown} (the data has format_version "
                f"{version}, this avil writes {FORMAT_VERSION}; a newer avil reads them).",
                stacklevel=2,
            )
        missing = [name for name, f in known.items()
                   if name not in d and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"{source}: not a History: the required keys {missing} are missing.")
        return cls(**{name: d[name] for name in known if name in d})

    def to_json(self, path) -> None:
        """Write the History to ``path`` atomically (the old file survives a failed write)."""
        io.write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_json(cls, path) -> "History":
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not a History JSON file ({err}). "
                                 "Fix: pass a file written by History.to_json.") from err
        return cls.from_dict(data, source=str(path))

