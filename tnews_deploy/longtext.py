"""Tokenising long texts only as far as the kept tokens need.

The model keeps the first `max_length` tokens of a text, but a tokenizer reads the whole text first: a 10 MB
line costs seconds and gigabytes for 64 tokens. `LongTextEncoder` tokenises a text longer than
`max_length * CHARS_PER_TOKEN` characters by its first that many characters (the cut), and keeps the result
only when it can show that the kept tokens are those of the whole text; otherwise it tokenises the whole text
(exact, as before). Why a cut can be proven safe:

* Normalising and pre-tokenising are local: they split a text into words (at spaces and punctuation; BERT
  also makes each CJK character a word) and a cut changes only the word it falls in (with a pre-tokenizer
  that looks one character ahead, also the word before). Each word is tokenised on its own. So when the cut
  text yields more than `max_length` tokens and the kept ones all come from words that end at least one
  whole word before the cut word (the tokenizer's word ids say so), the whole text has the same words first
  and keeps the same tokens. This settles real text for BERT (WordPiece) and spaced text for every tokenizer.
* A Unigram (SentencePiece: XLM-R, e5) tokenizer on unspaced text (Chinese) sees one long word, which it
  segments by Viterbi over a lattice whose pieces are at most L characters long (its longest vocabulary
  piece). The best segmentation of a word prefix ending at position p is the lattice's back-pointer chain
  from p, and the whole word's best path passes through one of any L + 1 consecutive positions. So when
  the cuts at each of the last L + 1 positions before the cut all keep the same tokens (same ids, same
  offsets), the whole text keeps them too. The check needs those positions inside one word and normalised
  one character to one character (no spaces, no characters that combine or expand), else it is not made.

What neither settles (one unbroken run of letters longer than the cut for BERT, or pages of whitespace) is
tokenised whole. Runtime side: tokenizers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from tokenizers import Encoding, Tokenizer

# Characters tokenised per kept token at first: an upper bound for real text (Chinese: ~1-1.5 characters per
# token; English: ~5). A cut that does not hold enough whole words is not used, so this bounds the work, not
# the result.
CHARS_PER_TOKEN = 16


class LongTextEncoder:
    """`encode` like `tokenizer.encode_batch`, reading a long text only as far as its kept tokens need.

    Args:
        tokenizer: a tokenizer with truncation to `max_length` enabled (and no padding).
        max_length: the tokens kept per text (special tokens included).
        chars_per_token: the cut is `max_length * chars_per_token` characters.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, chars_per_token: int = CHARS_PER_TOKEN) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_chars = max_length * chars_per_token

    @cached_property
    def longest_piece(self) -> int | None:
        """The longest vocabulary piece in characters for a Unigram tokenizer; None for other models."""
        if type(self.tokenizer.model).__name__ != "Unigram":
            return None
        return max(len(piece) for piece in self.tokenizer.get_vocab())

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """Encodings (special tokens added, truncated) equal to those of the whole texts, in one batch call.

        Args:
            texts: the texts, in order.
        """
        cap = self.max_chars
        encodings = self.tokenizer.encode_batch(
            [t if len(t) <= cap else t[:cap] for t in texts], add_special_tokens=True
        )
        for i, text in enumerate(texts):
            if len(text) > cap and not (self._words_settle(encodings[i]) or self._lattice_settles(text, encodings[i])):
                encodings[i] = self.tokenizer.encode(text, add_special_tokens=True)
        return encodings

    @staticmethod
    def _words_settle(cut: Encoding) -> bool:
        """Whether the kept tokens of the cut text all come from words ending a whole word before the cut word."""
        kept = [w for w in cut.word_ids if w is not None]
        rest = [w for more in cut.overflowing for w in more.word_ids if w is not None]
        return bool(kept and rest) and max(kept) + 2 <= max(rest)

    def _lattice_settles(self, text: str, cut: Encoding) -> bool:
        """For a Unigram tokenizer: whether the cuts at the last L + 1 positions before the cut keep the same
        tokens, the positions lying inside one word and normalised one character to one."""
        longest = self.longest_piece
        cap = self.max_chars
        if longest is None or cap - longest < 2 or not cut.overflowing:
            return False
        first = cap - longest
        window = text[first - 1 : cap + 1]  # the characters on both sides of every cut
        if not self._one_plain_word(window):
            return False
        others = self.tokenizer.encode_batch([text[:c] for c in range(first, cap)], add_special_tokens=True)
        return all(e.overflowing and e.ids == cut.ids and e.offsets == cut.offsets for e in others)

    def _one_plain_word(self, window: str) -> bool:
        normalizer: Any = self.tokenizer.normalizer
        if normalizer is not None:
            if any(len(normalizer.normalize_str(ch)) != 1 for ch in window):
                return False
            normalized = normalizer.normalize_str(window)
            if len(normalized) != len(window):
                return False
        else:
            normalized = window
        if any(ch.isspace() for ch in normalized):
            return False
        pre_tokenizer: Any = self.tokenizer.pre_tokenizer
        return pre_tokenizer is None or len(pre_tokenizer.pre_tokenize_str(normalized)) == 1
