"""The distillation loss and the Trainer that applies it (imports torch).

    loss = T² · KL(teacher_T ‖ student_T) + α · CE(student, gold)

where `x_T = softmax(logits / T)`. The KL term is averaged over every example
of the batch (the whole transfer set is unlabeled as far as it is concerned);
the cross-entropy only over the examples that carry a gold label (label
-100 marks the others), and is 0 in a batch without any. The T² factor keeps
the soft term's gradients on the scale of the hard term's whatever T is
(Hinton et al., 2015).

`DistillationTrainer` is a `transformers.Trainer` whose `compute_loss` takes the
cached teacher logits from the batch (`teacher_logits`); batches without them
(the selection slice) get the plain cross-entropy, so evaluation works as in
`train`. The mean KL and CE since the last log are added to the Trainer's logs.

`ElapsedCallback` (from `tnews_deploy.training.resume`) keeps the training time across resumed
invocations; `CompactProgressCallback` is the progress bar (losses on the bar, never the raw
log dicts Trainer prints; right ETA after a resume).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding
from transformers.trainer_callback import ProgressCallback

from ..training.resume import ElapsedCallback  # noqa: F401  (re-exported: it used to live here)
from ..training.trainer import Trainer

IGNORE_LABEL = -100
TEACHER_LOGITS = "teacher_logits"


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, kl, ce) for one batch.

    Args:
        student_logits: (batch, classes) logits of the student.
        teacher_logits: (batch, classes) logits of the teacher, same order.
        labels: (batch,) gold class ids, -100 where an example has none; None = no gold labels.
        temperature: softmax temperature T of the soft term (> 0).
        alpha: weight of the cross-entropy on gold labels (>= 0).
    """
    t = float(temperature)
    student_log_p = F.log_softmax(student_logits.float() / t, dim=-1)
    teacher_log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = F.kl_div(student_log_p, teacher_log_p, log_target=True, reduction="batchmean") * (t * t)
    ce = student_logits.new_zeros((), dtype=torch.float32)
    if labels is not None:
        labeled = labels != IGNORE_LABEL
        if bool(labeled.any()):
            ce = F.cross_entropy(student_logits[labeled].float(), labels[labeled])
    return kl + alpha * ce, kl.detach(), ce.detach()


class DistillationCollator(DataCollatorWithPadding):
    """Dynamic padding of the token columns; the teacher logits are stacked as float32."""

    def __call__(self, features):
        teacher = [f.pop(TEACHER_LOGITS) for f in features] if TEACHER_LOGITS in features[0] else None
        batch = super().__call__(features)
        if teacher is not None:
            batch[TEACHER_LOGITS] = torch.tensor(teacher, dtype=torch.float32)
        return batch


class DistillationTrainer(Trainer):
    """`Trainer` with the distillation loss on batches that carry teacher logits.

    Args:
        temperature: softmax temperature T (> 0).
        alpha: weight of the cross-entropy on gold labels (>= 0).
        *args, **kwargs: as for `transformers.Trainer`.
    """

    def __init__(self, *args, temperature: float, alpha: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.alpha = alpha
        self._reset_terms()

    def _reset_terms(self) -> None:
        self._kl_sum, self._kl_batches, self._ce_sum, self._ce_batches = 0.0, 0, 0.0, 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # do not change the caller's batch
        teacher_logits = inputs.pop(TEACHER_LOGITS, None)
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        logits = outputs.logits
        if teacher_logits is None:  # the selection slice: plain cross-entropy, as in `train`
            loss = F.cross_entropy(logits.float(), labels) if labels is not None else logits.new_zeros(())
        else:
            loss, kl, ce = distillation_loss(logits, teacher_logits, labels, self.temperature, self.alpha)
            if model.training:
                self._kl_sum, self._kl_batches = self._kl_sum + float(kl), self._kl_batches + 1
                if labels is not None and bool((labels != IGNORE_LABEL).any()):
                    self._ce_sum, self._ce_batches = self._ce_sum + float(ce), self._ce_batches + 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._kl_batches:
            # Mean KL over the batches since the last log; mean CE over those that had gold labels.
            logs = {**logs, "kl": round(self._kl_sum / self._kl_batches, 4)}
            if self._ce_batches:
                logs["ce"] = round(self._ce_sum / self._ce_batches, 4)
            self._reset_terms()
        super().log(logs, start_time)


# Log keys shown on the bar, and their short names.
SHOWN = {"loss": "loss", "kl": "kl", "ce": "ce", "eval_macro_f1": "sel-F1"}


class CompactProgressCallback(ProgressCallback):
    """Transformers' progress bar with the latest losses and selection macro-F1 as its postfix.

    `ProgressCallback` writes every log entry as a raw dict under the bar; this one shows the
    training loss, its KL and CE terms, the last and best selection macro-F1 on the bar instead,
    and starts the bar at the resumed step, so that its rate and ETA are right after a resume.
    """

    def __init__(self) -> None:
        super().__init__()
        self.postfix: dict[str, str] = {}
        self.best_selection: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm as auto_tqdm

            self.training_bar = auto_tqdm(
                total=state.max_steps, initial=state.global_step, dynamic_ncols=True, desc="training"
            )
        self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None:
            return
        for key, short in SHOWN.items():
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)):
                self.postfix[short] = f"{value:.4f}"
                if key == "eval_macro_f1" and (self.best_selection is None or value > self.best_selection):
                    self.best_selection = float(value)
        if self.best_selection is not None:
            self.postfix["best"] = f"{self.best_selection:.4f}"
        self.training_bar.set_postfix(self.postfix, refresh=False)
