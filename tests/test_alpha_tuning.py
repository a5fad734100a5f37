"""avil.alpha_tuning's tables: 03's paired differences, against single_task and
against the chosen default."""
import pytest

from avil import alpha_tuning, reproduce

# Per-seed test accuracies of three variants on one suite (seeds 0, 1, 2).
TESTS = {"chosen": [0.80, 0.82, 0.84], "better": [0.83, 0.85, 0.88], "noisy": [0.70, 0.90, 0.84]}
SINGLE_TASK = [0.80, 0.80, 0.80]


def summary_of(tests):
    return {"toy": {label: {"test": t, "difference": reproduce.paired_difference(t, SINGLE_TASK).to_dict()}
                    for label, t in tests.items()}}


def test_versus_table_pairs_every_variant_with_the_reference_per_seed():
    frame = alpha_tuning.versus_table(summary_of(TESTS), "chosen")
    assert list(frame.index) == ["better", "noisy"]  # the reference is not compared with itself
    # better − chosen = 0.03, 0.03, 0.04: mean 3.33 points, sd 0.577, t_{0.975, 2} = 4.3027 → ± 1.43
    assert frame.loc["better", "toy"] == "+3.33 ± 1.43 (3/3) *"
    # noisy − chosen = −0.10, +0.08, 0.00: inside its interval, one win in three, no asterisk
    assert frame.loc["noisy", "toy"].startswith("-0.67 ± ") and frame.loc["noisy", "toy"].endswith("(1/3)")


def test_differences_table_shows_the_difference_from_single_task():
    frame = alpha_tuning.differences_table(summary_of(TESTS))
    assert frame.loc["chosen", "toy"] == "+2.00 ± 4.97 (2/3)"  # 0, 2, 4 points: sd 2, ± 4.3027 · 2 / √3
    # 3, 5, 8 points: three wins, but an interval (± 6.25) that includes 0, so no asterisk
    assert frame.loc["better", "toy"] == "+5.33 ± 6.25 (3/3)"


def test_versus_table_names_a_missing_reference():
    with pytest.raises(ValueError, match=r"suite 'toy' has no variant 'default'.*\['better', 'chosen', 'noisy'\]"):
        alpha_tuning.versus_table(summary_of(TESTS), "default")
