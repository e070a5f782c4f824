"""Write TNEWS titles regrouped into 6 coarse topics as a CSV (`title,topic`), the README's "own data" example.

Usage: python examples/own-data/make_topics_csv.py TNEWS_HF_TRAIN_JSONL OUTPUT_CSV

The input is TNEWS's HF-style `train.jsonl` (integer labels in the hub's order); the output has other column
names than TNEWS, string labels, and no validation file: `tnews-deploy train` holds one out.
"""

from __future__ import annotations

import csv
import json
import sys

from tnews_deploy.labels import TNEWS_LABEL_NAMES

TOPICS: dict[str, tuple[str, ...]] = {
    "文娱": ("news_story", "news_culture", "news_entertainment", "news_game"),
    "体育": ("news_sports",),
    "财经": ("news_finance", "news_stock", "news_house", "news_agriculture"),
    "科技汽车": ("news_tech", "news_car"),
    "国际军事": ("news_military", "news_world"),
    "教育旅游": ("news_edu", "news_travel"),
}


def main(source: str, output: str) -> None:
    topic_of = {name: topic for topic, names in TOPICS.items() for name in names}
    assert sorted(topic_of) == sorted(TNEWS_LABEL_NAMES), "every TNEWS class needs a topic"
    with open(source, encoding="utf-8") as fh, open(output, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["title", "topic"])
        for line in fh:
            row = json.loads(line)
            writer.writerow([row["sentence"], topic_of[TNEWS_LABEL_NAMES[row["label"]]]])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2])
