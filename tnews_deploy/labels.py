"""The TNEWS label set: ids 0..14 in the hub's ClassLabel order, with CLUE's codes.

Stdlib only, so the runtime can use it without the training extra.
"""

from __future__ import annotations

# (CLUE code, name) in the order of `clue/labels.json` and of the hub's ClassLabel.
# Codes 105 and 111 do not exist in TNEWS.
TNEWS_LABELS: tuple[tuple[str, str], ...] = (
    ("100", "news_story"),
    ("101", "news_culture"),
    ("102", "news_entertainment"),
    ("103", "news_sports"),
    ("104", "news_finance"),
    ("106", "news_house"),
    ("107", "news_car"),
    ("108", "news_edu"),
    ("109", "news_tech"),
    ("110", "news_military"),
    ("112", "news_travel"),
    ("113", "news_world"),
    ("114", "news_stock"),
    ("115", "news_agriculture"),
    ("116", "news_game"),
)

TNEWS_LABEL_NAMES: tuple[str, ...] = tuple(name for _, name in TNEWS_LABELS)
