"""pandas tables of the notebooks' results: a ``summarize`` result, auxiliary
effects, a suite's tasks, final weights, and the α-step's records."""
import statistics
from typing import Dict, List

from ..history import History
from .runs import AuxiliaryEffect
from .stats import PairedDifference, ablation_records, alpha_step_records, holm


def holm_vs_baseline(summary: Dict[str, dict]) -> Dict[str, float]:
    """{method: Holm-adjusted p of its paired difference from the baseline},
    the table's comparisons as one family."""
    return holm({m: PairedDifference.from_dict(s["vs_baseline"]).p_value for m, s in summary.items()
                 if "vs_baseline" in s})


def table(summary: Dict[str, dict], scale: float = 100.0, unit: str = "%", alpha: float = 0.05):
    """A pandas table of a ``summarize`` result: one row per method, with the
    paired difference from the baseline (mean ± 95 % CI half-width in points,
    then wins/seeds), its Holm-adjusted p over the table's comparisons (three
    decimals, "< 0.001" below), the verdict of that test ("higher", "lower",
    or "no difference detected"), and the ``w[task]`` columns: final weights,
    mean over seeds."""
    import pandas as pd

    paired_columns = any("vs_baseline" in s for s in summary.values())
    if paired_columns:
        baseline = next(s["baseline"] for s in summary.values() if "baseline" in s)
        adjusted = holm_vs_baseline(summary)
    rows = []
    for method, s in summary.items():
        row = {
            "method": method,
            f"test {unit} (mean ± std)": f"{scale * s['test_mean']:.2f} ± {scale * s['test_std']:.2f}",
        }
        if paired_columns:
            paired = s.get("vs_baseline")
            diff = PairedDifference.from_dict(paired) if paired else None
            row[f"Δ vs {baseline} (95 % CI, wins)"] = diff.format(scale) if diff else "—"
            row["Holm p"] = ("< 0.001" if adjusted[method] < 0.001 else f"{adjusted[method]:.3f}") if diff else "—"
            row["verdict"] = ("—" if not diff else "no difference detected" if adjusted[method] >= alpha
                              else "higher" if diff.mean > 0 else "lower")
        row.update({
            f"best dev {unit}": f"{scale * s['dev_mean']:.2f} ± {scale * s['dev_std']:.2f}",
            "best epoch": ", ".join(str(e) for e in s["best_epoch"]),
            "seeds": len(s["test"]),
            **{f"w[{n}]": round(w, 2) for n, w in s["final_weights"].items()},
        })
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def effects_table(effects: Dict[str, AuxiliaryEffect], scale: float = 100.0, unit: str = "%"):
    """A pandas table of ``auxiliary_effects``: one row per auxiliary, the mean
    test metric with and without it, the paired difference (mean ± 95 % CI,
    wins/seeds) and whether the interval excludes 0."""
    import pandas as pd

    verdicts = {"higher": "helpful", "lower": "harmful", "inside CI": "no effect detected"}
    rows = []
    for aux, effect in effects.items():
        d = effect.difference
        rows.append({
            "auxiliary": aux,
            f"{effect.baseline} test {unit}": round(scale * statistics.fmean(h.test for h in effect.alone), 2),
            f"{effect.method} with it, test {unit}": round(scale * statistics.fmean(h.test for h in effect.joint), 2),
            f"effect, {'points' if unit == '%' else unit} (± 95 % CI, wins)": d.format(scale),
            "verdict": verdicts[d.verdict],
        })
    return pd.DataFrame(rows).set_index("auxiliary")


def suite_table(tasks):
    """A pandas table of a suite: per task, its head's outputs (where the head
    has ``out_features``) and its train / dev / test sizes."""
    import pandas as pd

    return pd.DataFrame([{"task": t.name, "outputs": getattr(t.head, "out_features", None), "train": len(t.train),
                          "dev": len(t.dev), "test": len(t.test)} for t in tasks]).set_index("task")


def alpha_step_table(histories: Dict[str, List[History]], digits: int = 3):
    """A pandas table of ``alpha_step_records``, indexed by (rule, seed,
    epoch): per epoch of every αVIL run, α and the weight of each task, the
    dev loss before (at α_init) and after the α-step, the solver's work, the
    α on a bound and whether it converged."""
    import pandas as pd

    frame = pd.DataFrame(alpha_step_records(histories)).set_index(["rule", "seed", "epoch"])
    frame["on_bound"] = [", ".join(names) or "—" for names in frame["on_bound"]]
    frame = frame.rename(columns={"loss_init": "dev loss at α_init", "loss_final": "dev loss at α",
                                  "on_bound": "α on a bound", "seconds": "α-step s"})
    return frame.round(digits)


def ablation_table(histories: Dict[str, List[History]], digits: int = 4):
    """A pandas table of ``ablation_records``, indexed by (rule, seed, epoch),
    one column per task: the rise of the target's dev loss when that task's
    update is dropped from the merge at the chosen α."""
    import pandas as pd

    return pd.DataFrame(ablation_records(histories)).set_index(["rule", "seed", "epoch"]).round(digits)
