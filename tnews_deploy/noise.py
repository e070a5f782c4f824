"""Known false alarms of the libraries we drive, silenced narrowly: by logger and message, or by message.

Each entry below is a warning that fires on every normal run of this toolkit and
says nothing true about it; any other warning from the same places still shows.
Stdlib only: nothing here imports transformers or torch (the filters attach to
logger names and to the `warnings` module before those libraries load).

* transformers 4.57.3+ tags every local tokenizer with a vocabulary over 100k
  (e5 / XLM-R's 250k Unigram) whose `config.json` was saved by 4.57.3–4.x as a
  Mistral tokenizer "with an incorrect regex pattern … set
  `fix_mistral_regex=True`" — once per tokenizer load, ~8 times an export. The
  patch it proposes is Mistral's pre-tokenizer; for BERT / XLM-R tokenizers it
  would be wrong.
* "`torch_dtype` is deprecated! Use `dtype` instead!": Optimum's exporter
  passes the old keyword to transformers; nothing the user can change.
* "The tokenizer has new PAD/BOS/EOS tokens that differ from the model config":
  the Trainer copies an XLM-R tokenizer's BOS/EOS ids into a BERT config (e5) at
  every run. Those ids only matter to text generation; a sequence classifier
  masks padding with the attention mask, and the embedding's padding row was
  fixed when the model was built.
* torch's TracerWarning "torch.tensor results are registered as constants in
  the trace" during the ONNX export, from transformers' attention-mask helper: the
  constant is 1.0, the same for every input, which is the case the warning
  itself calls safe.
"""

from __future__ import annotations

import logging
import warnings

# logger name -> message fragments to drop (records logged directly on that logger)
LOGGER_MESSAGES: dict[str, tuple[str, ...]] = {
    "transformers.tokenization_utils_base": ("with an incorrect regex pattern",),
    "transformers.configuration_utils": ("`torch_dtype` is deprecated",),
    "transformers.modeling_utils": ("`torch_dtype` is deprecated",),
    "transformers.trainer": ("The tokenizer has new PAD/BOS/EOS tokens",),
}
# regexes matched against the start of a `warnings` message
WARNING_MESSAGES: tuple[str, ...] = (r"torch\.tensor results are registered as constants in the trace",)

_installed = False


class DropMessages(logging.Filter):
    """Drops records whose message contains one of `fragments`."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def silence_known_noise() -> None:
    """Install the filters above (once per process; later calls do nothing)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, fragments in LOGGER_MESSAGES.items():
        logging.getLogger(name).addFilter(DropMessages(fragments))
    for pattern in WARNING_MESSAGES:
        warnings.filterwarnings("ignore", message=pattern)
