"""The study report (`tnews-deploy report GRID`): the study's Table 2 beside ours, its five questions answered.

On TNEWS (the grid's class list is TNEWS's) the report sets our cells beside the study's figures and CLUE's;
on other data it answers the same questions for that data's classes, without the TNEWS-only comparisons.

Everything in the report is computed from run folders (`metrics.json`, `predictions.json`,
`run_config.json`): regenerating it is one command. Intervals are 95 % paired bootstrap
intervals over the evaluation sentences and the seeds (`cells.Cells`); two cells are
*statistically indistinguishable* when the interval of their difference contains 0.

The study's own figures are the ones the repository records (docs/training.md: its
macro-F1 per row); what it does not record (the study's micro-F1) is marked as such,
never filled in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..labels import TNEWS_LABEL_NAMES
from ..runfiles import GRID_RESULTS_JSON, has_results, read_json, replaced_whole, write_text_atomic
from .cells import Cell, Cells, Run, load_run
from .grid import identity_text
from .stats import Interval

logger = logging.getLogger(__name__)

STUDY_FROZEN = "freeze-encoder"  # the study's "frozen" model: the encoder frozen, its head trained
NOT_RECORDED = "n/r"
# The study's Table 2 as far as the repository records it (docs/training.md, "study (bert-base-chinese)"):
# macro-F1; its micro-F1 figures are not in the repository (None).
STUDY_TABLE2: list[tuple[str, int, float | None, float | None]] = [
    ("full", 500, 0.09, None),
    ("full", 1000, 0.43, None),
    ("full", 5000, 0.44, None),
    (STUDY_FROZEN, 1000, 0.01, None),
    (STUDY_FROZEN, 5000, 0.01, None),
]


def folder_runs(folder: Path) -> list[Run]:
    """The finished runs of a grid folder (its run sub-folders) or of one run folder: those with results
    (`has_results`), so that a copy kept without checkpoints (`docs/`) regenerates its report."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; give a grid folder (with {GRID_RESULTS_JSON}) or a run folder.")
    if has_results(folder):
        return [load_run(folder)]
    runs = [load_run(sub) for sub in sorted(folder.iterdir()) if sub.is_dir() and has_results(sub)]
    if not runs:
        raise UserError(f"{folder}: holds no finished run; train the grid (or run) first.")
    return runs


def _pm(cell: Cell, key: str) -> str:
    values = cell.values(key)
    if not values:
        return "—"
    mean = float(np.mean(values))
    if len(values) == 1:  # no spread over seeds to show: a std of 0 would claim one
        return f"{mean:.3f} (1 seed)"
    return f"{mean:.3f} ± {float(np.std(values, ddof=1)):.3f}"


def _mean0(cell: Cell, key: str) -> str:
    """The mean of `key` over the cell's runs, no decimals (— when no run records it)."""
    values = cell.values(key)
    return f"{np.mean(values):.0f}" if values else "—"


def _ci(ci: Interval | None, digits: int = 3) -> str:
    return f"[{ci.low:.{digits}f}, {ci.high:.{digits}f}]" if ci else "(no predictions saved)"


def _diff(ci: Interval | None) -> str:
    return f"{ci.value:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]" if ci else "—"


def _size(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


class StudyReport:
    """The report of a grid (its main cells) and extra runs (other presets, class weights, full data).

    Args:
        grid: the grid folder.
        extras: further grid or run folders whose cells join the report (e.g. `--preset paper` on the frozen
            variant, `--class-weight balanced`, `--train-size all`).
        draws: bootstrap resamples.
    """

    def __init__(self, grid: Path, extras: list[Path] | tuple[Path, ...] = (), draws: int = 1000) -> None:
        self.grid = Path(grid)
        self.results = read_json(self.grid / GRID_RESULTS_JSON) or {}
        main = folder_runs(self.grid)
        self.main_runs = {id(r) for r in main}
        runs = list(main)
        for extra in extras:
            runs += folder_runs(Path(extra))
        self.preset = self.results.get("preset") or main[0].config.get("preset", "default")
        names = main[0].metrics.get("label_names")
        self.label_names: list[str] = list(names) if names else list(TNEWS_LABEL_NAMES)
        self.tnews = tuple(self.label_names) == TNEWS_LABEL_NAMES  # the study's task: compare with its figures
        self.cells = Cells(runs, draws=draws, defaults={"preset": self.preset, "class_weight": "none"})
        # The grid's own cells; cells of --extra folders are compared with them.
        self.main = [c for c in self.cells if all(id(r) in self.main_runs for r in c.runs)]

    def cell(self, variant: str, size: Any) -> Cell | None:
        """The grid's cell of `variant` × `size`, if it was trained."""
        return next((c for c in self.main if c.variant == variant and c.train_size == size), None)

    # ------------------------------------------------------------------ sections

    def header(self) -> list[str]:
        r = self.results
        model = r.get("model")
        seeds = sorted({run.seed for c in self.main for run in c.runs})
        first = self.main[0].runs[0]
        eval_size = first.metrics.get("eval_size")
        lines = [
            "# TNEWS study report" if self.tnews else f"# Study report: {len(self.label_names)} classes",
            "",
            f"Generated by `tnews-deploy report` from the run folders of the grid `{self.grid.name}` (model "
            f"{identity_text(model)}, data {identity_text(r.get('data'))}, preset `{self.preset}`, training seeds "
            f"{', '.join(map(str, seeds))}). Every run is scored on the same {eval_size:,} validation sentences "
            f"(evaluation-set seed {first.config.get('seed', 42)}).",
            "",
            "Figures are means over seeds; `± x` is the standard deviation over seeds; `[a, b]` is a 95 % bootstrap "
            f"interval ({self.cells.draws:,} resamples of the evaluation sentences, the seeds resampled too), and for "
            "a difference between two cells the interval of the paired difference (both cells scored on the same "
            "resamples, their seeds drawn alike: runs of one seed and size share their training sentences). Two "
            "cells are statistically indistinguishable when that interval contains 0.",
        ]
        if r.get("command"):
            lines += ["", "The grid:", "", "```", r["command"], "```"]
        return lines

    def table2(self) -> list[str]:
        if not self.tnews:
            return self.cells_table()
        lines = [
            "",
            "## Table 2: the study's rows beside ours",
            "",
            f'The study\'s "frozen" model is our `{STUDY_FROZEN}` (the encoder frozen, its head trained). Study '
            f"figures: macro-F1 as the repository records them (docs/training.md, bert-base-chinese); "
            f"`{NOT_RECORDED}` = study figures not in the repository. Ours: {self.model_name()}.",
            "",
            "| row | study macro-F1 | study micro-F1 | our macro-F1 | 95 % interval | our micro-F1 | 95 % interval |",
            "|---|---|---|---|---|---|---|",
        ]
        shown = set()
        for variant, size, macro, micro in STUDY_TABLE2:
            cell = self.cell(variant, size)
            name = f"{'frozen' if variant == STUDY_FROZEN else variant} × {size:,}"
            study = (
                f"{macro:.2f}" if macro is not None else NOT_RECORDED,
                f"{micro:.2f}" if micro is not None else NOT_RECORDED,
            )
            if cell is None:
                lines.append(f"| {name} | {study[0]} | {study[1]} | not trained | | | |")
                continue
            shown.add(id(cell))
            lines.append(
                f"| {name} | {study[0]} | {study[1]} | {_pm(cell, 'macro_f1')} | "
                f"{_ci(self.cells.interval(cell))} | {_pm(cell, 'micro_f1')} | "
                f"{_ci(self.cells.interval(cell, 'accuracy'))} |"
            )
        extra = [c for c in self.cells if id(c) not in shown]
        if extra:
            lines += ["", "Our extra rows (not in the study):", "", *self._rows(extra)]
        return lines

    def cells_table(self) -> list[str]:
        """Every cell with its intervals: the table of a grid on other data than TNEWS (no study to set beside)."""
        return ["", f"## The cells ({self.model_name()})", "", *self._rows(list(self.cells))]

    def _rows(self, cells: list[Cell]) -> list[str]:
        lines = ["| row | seeds | macro-F1 | 95 % interval | micro-F1 | 95 % interval |", "|---|---|---|---|---|---|"]
        for cell in self._ordered(cells):
            lines.append(
                f"| {cell.label} | {len(cell.runs)} | {_pm(cell, 'macro_f1')} | "
                f"{_ci(self.cells.interval(cell))} | {_pm(cell, 'micro_f1')} | "
                f"{_ci(self.cells.interval(cell, 'accuracy'))} |"
            )
        return lines

    def model_name(self) -> str:
        model = self.results.get("model")
        return f"`{model.get('name')}`" if isinstance(model, dict) else "the grid's model"

    def _ordered(self, cells: list[Cell]) -> list[Cell]:
        def key(c: Cell):
            size = c.train_size if isinstance(c.train_size, int) else 10**9
            return (c.label.count("("), c.variant, size, c.label)

        return sorted(cells, key=key)

    def q1_new_head(self) -> list[str]:
        lines = ["", "## 1. The warning when a pretrained encoder gets a new task head", ""]
        run = next((r for c in self.main for r in c.runs if r.metrics.get("newly_initialized") is not None), None)
        if run is None:
            return lines + [
                "Not recorded: these runs predate the capture of loading warnings (`metrics.json` has no "
                "`newly_initialized`); train them again to fill this section."
            ]
        names = run.metrics["newly_initialized"]
        warnings = run.metrics.get("load_warnings") or []
        lines += [
            f"Captured in the run log (`{run.folder.name}/train.log`) and in `metrics.json` (`load_warnings`):",
            "",
        ]
        lines += ["```", *(w.strip() for w in warnings), "```"] if warnings else ["(transformers printed no warning)"]
        k = len(self.label_names)
        task = f"{k}-class TNEWS head" if self.tnews else f"{k}-class head for this task"
        lines += [
            "",
            f"Newly initialised weights ({len(names)}): " + ", ".join(f"`{n}`" for n in names) + ".",
            "",
            "What it means: the checkpoint is a pretrained *encoder* (masked-language-model / embedding "
            f"pretraining); it holds no weights for a {task}, because no such head existed when it "
            "was trained. `AutoModelForSequenceClassification` adds the head (a dropout and a linear layer "
            f"from the pooled [CLS] vector to {k} logits) and initialises it at random, and transformers says "
            "so. It is expected and harmless here: training that head (and, in the full variants, the encoder "
            "with it) is what fine-tuning is. It would signal a problem only when loading a checkpoint "
            "that should already hold a trained head (a fine-tuned classifier), whose head would then be "
            "lost.",
        ]
        if any(not n.startswith("classifier") for n in names):
            lines += [
                "",
                "Besides the classifier, the names above include weights the checkpoint does not carry "
                "(e.g. a pooler that the encoder's pretraining did not use): they too start at random and "
                "train in every variant (the frozen-encoder variant trains pooler + classifier).",
            ]
        return lines

    def q2_best(self) -> list[str]:
        lines = ["", "## 2. The best model, and the cells indistinguishable from it", ""]
        # Every cell scored on the grid's evaluation set (the grid's own and those of --extra folders) competes.
        keys = {c.eval_key for c in self.main if c.eval_key}
        scored = [c for c in self.cells if c.eval_key in keys] if keys else self.main
        best = max(scored, key=lambda c: float(np.mean(c.values("macro_f1"))))
        ci = self.cells.interval(best)
        others = [c for c in self.cells if c not in scored]
        lines += [
            f"Best by mean macro-F1 among the cells scored on the grid's evaluation set: **{best.label}**, "
            f"macro-F1 {_pm(best, 'macro_f1')} {_ci(ci)}, micro-F1 {_pm(best, 'micro_f1')} "
            f"{_ci(self.cells.interval(best, 'accuracy'))}."
            + (
                " (" + ", ".join(c.label for c in others) + ": another evaluation set, not compared here.)"
                if others
                else ""
            ),
            "",
            "| cell | macro-F1 | 95 % interval | best − cell | indistinguishable from the best? |",
            "|---|---|---|---|---|",
        ]
        same = []
        for cell in self._ordered(scored):
            if cell is best:
                continue
            d = self.cells.difference(best, cell)
            verdict = "—" if d is None else ("yes" if not d.excludes_zero() else "no")
            if verdict == "yes":
                same.append(cell.label)
            lines.append(
                f"| {cell.label} | {_pm(cell, 'macro_f1')} | {_ci(self.cells.interval(cell))} | {_diff(d)} | "
                f"{verdict} |"
            )
        lines += [
            "",
            ("Statistically indistinguishable from the best: " + ", ".join(same) + ".")
            if same
            else "No other cell is statistically indistinguishable from the best.",
        ]
        return lines

    def q3_macro_micro(self) -> list[str]:
        from sklearn.metrics import accuracy_score, f1_score

        lines = ["", "## 3. Macro- vs micro-F1", ""]
        best = max(self.main, key=lambda c: float(np.mean(c.values("macro_f1"))))
        names = best.runs[0].metrics["label_names"]
        per_class = {n: [r.metrics["per_class"][n] for r in best.runs] for n in names}
        train_counts = {
            n: [float((r.metrics.get("train_class_counts") or {}).get(n, np.nan)) for r in best.runs] for n in names
        }
        rows = []
        for n in names:
            f1 = float(np.mean([p["f1-score"] for p in per_class[n]]))
            rows.append(
                (
                    n,
                    f1,
                    float(np.mean([p["precision"] for p in per_class[n]])),
                    float(np.mean([p["recall"] for p in per_class[n]])),
                    int(per_class[n][0]["support"]),
                    float(np.nanmean(train_counts[n])) if not np.all(np.isnan(train_counts[n])) else None,
                )
            )
        total = sum(r[4] for r in rows)
        lines += [
            f"Per class in the best cell ({best.label}; means over {len(best.runs)} seed(s)), lowest F1 first. "
            "Frequency = share of the evaluation set; training sentences = in the cell's training subset.",
            "",
            "| class | F1 | precision | recall | evaluation sentences | frequency | training sentences |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, f1, p, r, support, train in sorted(rows, key=lambda x: x[1]):
            lines.append(
                f"| {n} | {f1:.3f} | {p:.3f} | {r:.3f} | {support:,} | {support / total:.1%} | "
                f"{'—' if train is None else f'{train:,.0f}'} |"
            )
        macro, micro = float(np.mean(best.values("macro_f1"))), float(np.mean(best.values("micro_f1")))
        by_freq = sorted(rows, key=lambda x: x[4])
        m = max(1, min(5, len(rows) // 3))  # classes at each end of the frequency order (TNEWS: 5 of 15)
        rare, common = by_freq[:m], by_freq[-m:]
        ends = (
            f"The {m} rarest classes have a mean F1 of {{:.3f}}, the {m} most frequent {{:.3f}}"
            if m > 1
            else "The rarest class has an F1 of {:.3f}, the most frequent {:.3f}"
        )
        f1s, freqs = np.array([r[1] for r in rows]), np.array([r[4] for r in rows], dtype=float)
        corr = float(np.corrcoef(np.argsort(np.argsort(freqs)), np.argsort(np.argsort(f1s)))[0, 1])
        worst = sorted(rows, key=lambda x: x[1])[: max(1, min(3, len(rows) // 3))]
        confusion = np.sum([np.asarray(r.metrics["confusion_matrix"]) for r in best.runs], axis=0)
        index = {n: i for i, n in enumerate(names)}

        def confused(name: str) -> str:
            row = confusion[index[name]].astype(float)
            i = index[name]
            correct, row[i] = row[i], -1
            j = int(row.argmax())
            total_row = correct + row[row >= 0].sum()
            return (
                (
                    f"`{name}`: {correct / total_row:.0%} of its sentences right, {row[j] / total_row:.0%} taken for "
                    f"`{names[j]}`"
                )
                if total_row
                else f"`{name}`: no sentences"
            )

        trend = (
            "F1 rises with class frequency"
            if corr > 0.3
            else "class frequency alone does not explain F1"
            if corr > -0.3
            else "F1 falls with class frequency"
        )
        gap = "lower" if macro < micro else "not lower"
        lines += [
            "",
            f"Macro-F1 ({macro:.3f}) averages the {len(names)} per-class F1 with equal weight; micro-F1 "
            f"({micro:.3f}) pools every sentence, so frequent classes weigh more in it. Macro-F1 is {gap} here; "
            "the classes that pull it down are the ones with the lowest F1 — "
            + ", ".join(f"`{r[0]}` ({r[1]:.2f}, {r[4] / total:.1%} of the sentences)" for r in worst)
            + f" — which count for 1/{len(names)} each in macro-F1 but only for their share of sentences in "
            "micro-F1. "
            + ends.format(np.mean([r[1] for r in rare]), np.mean([r[1] for r in common]))
            + f"; the rank correlation of class frequency and F1 is {corr:+.2f} ({trend}). Where their "
            "sentences go (confusion matrix, summed over seeds): " + "; ".join(confused(r[0]) for r in worst) + ".",
        ]
        gaps = []
        for cell in self.cells:
            for run in cell.runs:
                if run.predictions:
                    y, p = run.predictions["labels"], run.predictions["predictions"]
                    gaps.append(abs(f1_score(y, p, average="micro") - accuracy_score(y, p)))
        runs_count = sum(len(c.runs) for c in self.cells)
        lines += [
            "",
            "Micro-F1 equals accuracy for single-label classification: every sentence has exactly one gold "
            "and one predicted class, so each error is one false positive (for the predicted class) and one "
            "false negative (for the gold class); pooled over classes, precision = recall = correct / all = "
            "accuracy. "
            + (
                f"Checked on the data: over {len(gaps)} of {runs_count} runs' saved predictions, "
                f"the largest |micro-F1 − accuracy| (scikit-learn) is {max(gaps):.1e}."
                if gaps
                else "(No predictions saved to check it on.)"
            ),
        ]
        return lines

    def q4_learning_curve(self, figure: Path | None) -> list[str]:
        sizes = sorted({c.train_size for c in self.main if isinstance(c.train_size, int)})
        small, large = (sizes[0], sizes[-1]) if sizes else (500, 5000)
        title = f"## 4. From {small:,} to {large:,} sentences" if small != large else "## 4. Training-set size"
        lines = [
            "",
            title,
            "",
            f"Per variant, the gain from {small:,} to {large:,} training sentences"
            + (" (the study: 500 → 5,000)" if self.tnews else "")
            + ", "
            "with paired intervals (the same evaluation resamples; the seeds' subsets differ per size).",
            "",
            f"| variant | {small:,} | {large:,} | {large:,} − {small:,} (macro-F1) | "
            f"{large:,} − {small:,} (micro-F1) |",
            "|---|---|---|---|---|",
        ]
        pairs = [(v, self.cell(v, small), self.cell(v, large)) for v in dict.fromkeys(c.variant for c in self.main)]
        pairs = [(v, a, b) for v, a, b in pairs if a and b and a is not b]
        if small == large:
            lines[-4:] = [f"Needs at least two training-set sizes in the grid (it has {_size(small)} only)."]
        elif not pairs:  # a partial grid: no variant has both sizes yet
            lines[-4:] = [
                f"Needs one variant trained on both {small:,} and {large:,} sentences; no variant has both yet."
            ]
        for v, a, b in pairs:
            lines.append(
                f"| {v} | {_pm(a, 'macro_f1')} | {_pm(b, 'macro_f1')} | "
                f"{_diff(self.cells.difference(b, a))} | {_diff(self.cells.difference(b, a, 'accuracy'))} |"
            )
        if figure is not None:
            lines += [
                "",
                f"![learning curve]({figure.name})",
                "",
                "Macro-F1 against training sentences (log scale), means over seeds with 95 % intervals.",
            ]
        return lines

    def q5_freeze(self) -> list[str]:
        lines = [
            "",
            "## 5. Freeze or not",
            "",
            f"`{STUDY_FROZEN}` − `full` per size (macro-F1 and micro-F1 differences with paired intervals), "
            "against what each costs: trainable parameters, optimiser steps and training seconds (means over "
            "seeds; the device is in the grid's results). Steps and parameters do not depend on what else "
            "the machine ran; seconds do.",
            "",
            "| size | Δ macro-F1 | Δ micro-F1 | trainable full / frozen | steps full / frozen "
            "| train s full / frozen |",
            "|---|---|---|---|---|---|",
        ]
        sizes = sorted({c.train_size for c in self.main}, key=lambda n: (not isinstance(n, int), str(n).zfill(12)))
        if not any(self.cell("full", n) and self.cell(STUDY_FROZEN, n) for n in sizes):
            lines[-2:] = [f"Needs `full` and `{STUDY_FROZEN}` cells of one size in the grid."]
        for n in sizes:
            full, frozen = self.cell("full", n), self.cell(STUDY_FROZEN, n)
            if not full or not frozen:
                continue
            tf = full.runs[0].metrics.get("trainable_parameters") or 0
            tz = frozen.runs[0].metrics.get("trainable_parameters") or 0
            lines.append(
                f"| {_size(n)} | {_diff(self.cells.difference(frozen, full))} | "
                f"{_diff(self.cells.difference(frozen, full, 'accuracy'))} | "
                f"{tf:,} / {tz:,} | {_mean0(full, 'steps')} / {_mean0(frozen, 'steps')} | "
                f"{_mean0(full, 'train_seconds')} / {_mean0(frozen, 'train_seconds')} |"
            )
        paper = [c for c in self.cells if c.settings.get("preset") == "paper" and c.variant == STUDY_FROZEN]
        lines += [
            "",
            ("**The study's frozen result (F1 0.01), measured.** " if self.tnews else "")
            + "The study's own settings (`--preset paper`: batch 8, lr 1e-5, 30 epochs, no warm-up, the last "
            "step scored) on the frozen variant:",
        ]
        if not paper:
            return lines + [
                "",
                "Not measured in this report: run "
                "`tnews-deploy grid --preset paper --variants freeze-encoder --train-sizes 1000,5000 ...` "
                "and pass its folder with `--extra`.",
            ]
        lines += [
            "",
            "| row | lr | steps | macro-F1 | 95 % interval | micro-F1 | classes predicted | most-predicted "
            "class's share |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for cell in self._ordered(paper):
            shares, kinds = [], []
            for run in cell.runs:
                if run.predictions:
                    counts = np.bincount(run.predictions["predictions"])
                    shares.append(counts.max() / counts.sum())
                    kinds.append(int((counts > 0).sum()))
            lines.append(
                f"| {cell.label} | {cell.settings.get('lr'):g} | {cell.runs[0].metrics.get('steps')} | "
                f"{_pm(cell, 'macro_f1')} | {_ci(self.cells.interval(cell))} | {_pm(cell, 'micro_f1')} | "
                f"{np.mean(kinds) if kinds else float('nan'):.1f} | "
                f"{np.mean(shares) if shares else float('nan'):.1%} |"
            )
            ours = self.cell(STUDY_FROZEN, cell.train_size)
            if ours is not None:
                lines.append(
                    f"| {ours.label} (preset {self.preset}) | {ours.settings.get('lr'):g} | "
                    f"{ours.runs[0].metrics.get('steps')} | {_pm(ours, 'macro_f1')} | "
                    f"{_ci(self.cells.interval(ours))} | {_pm(ours, 'micro_f1')} | | |"
                )
        lines += [
            "",
            "With the encoder frozen, only the freshly initialised head (and pooler) learn, from random "
            "weights. What the rows above measure: ",
        ]
        notes, lower = [], []
        for cell in self._ordered(paper):
            ours = self.cell(STUDY_FROZEN, cell.train_size)
            if ours is None:
                continue
            d = self.cells.difference(ours, cell)
            ratio = float(cell.settings.get("lr")) / float(ours.settings.get("lr"))
            lower.append(d is not None and d.low > 0)
            notes.append(
                f"at {_size(cell.train_size)} sentences the study's settings (lr {cell.settings.get('lr'):g}, "
                f"{ratio:.2%} of our {ours.settings.get('lr'):g} for this variant) give macro-F1 "
                f"{np.mean(cell.values('macro_f1')):.3f} against our {np.mean(ours.values('macro_f1')):.3f} "
                f"(difference {_diff(d)})"
            )
        lines[-1] += "; ".join(notes) + "." if notes else "no run of our preset to compare with."
        if lower and all(lower):
            lines += [
                "",
                "The study's settings score measurably lower than ours on the same frozen encoder (every "
                "interval above excludes 0). A head that predicts one or a few classes for nearly every "
                f"sentence (the columns above) scores a macro-F1 of about (F1 of that class) / "
                f"{len(self.label_names)}: "
                + ("the study's 0.01 is " if self.tnews else "that is ")
                + "what a head left near its random start gives — a learning rate meant for fine-tuning "
                "a pretrained encoder, applied to a head trained from scratch — not a property of freezing.",
            ]
        elif notes:
            lines += [
                "",
                "Here the study's settings do not score measurably lower than ours (an interval above "
                "contains 0)" + (", so these runs do not explain the study's 0.01." if self.tnews else "."),
            ]
        return lines

    def rarest_class(self, cell: Cell) -> str:
        """The class with the fewest evaluation sentences (TNEWS: `news_stock`); ties go to the first in id order."""
        per_class = cell.runs[0].metrics.get("per_class") or {}
        support = {n: (per_class.get(n) or {}).get("support", float("inf")) for n in self.label_names}
        return min(self.label_names, key=lambda n: support[n])

    def class_weights(self) -> list[str]:
        weighted = [c for c in self.cells if c.settings.get("class_weight") == "balanced"]
        lines = ["", "## Class weighting (`--class-weight balanced`)", ""]
        if not weighted:
            return lines + [
                "Not measured in this report: train a grid with `--class-weight balanced` and pass it with `--extra`."
            ]
        rare = self.rarest_class(weighted[0])
        lines += [
            "Each weighted cell against the same cell without weights (same preset, seeds and evaluation "
            f"set): differences weighted − unweighted with paired intervals, and the F1 of `{rare}`, the "
            "rarest class of the evaluation set.",
            "",
            f"| cell | Δ macro-F1 | Δ micro-F1 | {rare} F1 unweighted → weighted | macro-F1 not lower? |",
            "|---|---|---|---|---|",
        ]
        for cell in self._ordered(weighted):
            settings = {k: v for k, v in cell.settings.items() if k not in ("class_weight",)}
            base = next(
                (
                    c
                    for c in self.cells
                    if c is not cell
                    and c.settings.get("class_weight", "none") == "none"
                    and {k: v for k, v in c.settings.items() if k != "class_weight"} == settings
                ),
                None,
            )
            if base is None:
                lines.append(f"| {cell.label} | no unweighted cell to compare | | | |")
                continue

            def stock(c: Cell) -> str:
                values = [r.metrics["per_class"].get(rare, {}).get("f1-score") for r in c.runs]
                values = [v for v in values if v is not None]
                return f"{np.mean(values):.3f}" if values else "—"

            d = self.cells.difference(cell, base)
            verdict = (
                "—"
                if d is None
                else "yes (higher)"
                if d.low > 0
                else "yes (within the interval)"
                if d.high >= 0
                else "no (lower)"
            )
            lines.append(
                f"| {cell.label} | {_diff(d)} | {_diff(self.cells.difference(cell, base, 'accuracy'))} | "
                f"{stock(base)} → {stock(cell)} | {verdict} |"
            )
        return lines

    def full_data(self) -> list[str]:
        cells = [c for c in self.cells if c.train_size == "all"]
        if not cells:
            return []
        lines = [
            "",
            "## Full training split (`--train-size all`)",
            "",
            "| cell | training sentences | evaluation sentences | accuracy | 95 % interval | macro-F1 | "
            "95 % interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for cell in cells:
            m = cell.runs[0].metrics
            lines.append(
                f"| {cell.label} | {m.get('train_examples', '?'):,} | {m.get('eval_size', '?'):,} | "
                f"{_pm(cell, 'accuracy')} | {_ci(self.cells.interval(cell, 'accuracy'))} | "
                f"{_pm(cell, 'macro_f1')} | {_ci(self.cells.interval(cell))} |"
            )
        if self.tnews:
            lines += [
                "",
                "For scale: CLUE's published TNEWS dev-set accuracy is 53.6 % for ALBERT-tiny and 57.5 % for "
                "RoBERTa-wwm-ext (CLUE benchmark, 2020); the dev set is the 10,000 validation sentences.",
            ]
        return lines

    def plot_learning_curve(self, path: Path) -> Path | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = False
        variants = list(dict.fromkeys(c.variant for c in self.main))
        for index, variant in enumerate(variants):
            dodge = 1 + 0.04 * (index - (len(variants) - 1) / 2)  # side by side at one size, not on top
            points = []
            for cell in self.main:
                if cell.variant != variant:
                    continue
                n = cell.runs[0].metrics.get("train_examples") or cell.train_size
                if not isinstance(n, int):
                    continue
                ci = self.cells.interval(cell)
                mean = float(np.mean(cell.values("macro_f1")))
                points.append((n * dodge, mean, (mean - ci.low, ci.high - mean) if ci else (0.0, 0.0)))
            if not points:
                continue
            points.sort()
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            err = np.array([p[2] for p in points]).T
            ax.errorbar(xs, ys, yerr=np.maximum(err, 0), marker="o", capsize=3, label=variant)
            drawn = True
        if not drawn:
            plt.close(fig)
            return None
        ax.set_xscale("log")
        sizes = sorted({c.train_size for c in self.main if isinstance(c.train_size, int)})
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])  # the grid's sizes, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel("training sentences")
        ax.set_ylabel("macro-F1 on the evaluation set")
        ax.set_title("Learning curve: mean over seeds, 95 % bootstrap intervals")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def render(self, output: Path) -> str:
        figure_path = output.with_name(f"{output.stem}-learning-curve.png")
        with replaced_whole(figure_path, ".png") as partial:  # two workers may write the report at once
            figure = figure_path if self.plot_learning_curve(partial) is not None else None
        lines = [
            *self.header(),
            *self.table2(),
            *self.q1_new_head(),
            *self.q2_best(),
            *self.q3_macro_micro(),
            *self.q4_learning_curve(figure),
            *self.q5_freeze(),
            *self.class_weights(),
            *self.full_data(),
        ]
        return "\n".join(lines) + "\n"


def write_study_report(grid: Path, output: Path, extras: list[Path] | tuple[Path, ...] = (), draws: int = 1000) -> Path:
    """Write the study report of `grid` (and `extras`) to `output` (Markdown) with its learning-curve figure beside.

    Args:
        grid: the grid folder (`tnews-deploy grid --output`).
        output: the Markdown file to write.
        extras: further grid or run folders to include (other presets, class weights, full data).
        draws: bootstrap resamples.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = StudyReport(grid, extras, draws=draws)
    write_text_atomic(output, report.render(output))
    logger.info("wrote %s", output)
    return output
