"""Train/val split: seeded, reproducible, and class-aware.

Every class that appears in at least two images gets at least one of them in each split, so val
metrics exist for every class and training sees every class. Negatives (images without boxes) are
split at the same fraction as the rest.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence


def split_indices(image_labels: Sequence[set[str]], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split images (given as the set of labels each holds) into (train, val) index lists.

    Every class found in >= 2 images keeps >= 1 of them in train, and gets >= 1 in val whenever that
    is possible. Both lists come back in a seeded shuffled order (training reads records in file order, so a
    shuffled file is a better start than annotation order). Same inputs and seed -> same result.
    """
    count = len(image_labels)
    rng = random.Random(seed)
    order = list(range(count))
    rng.shuffle(order)
    if count == 0 or val_fraction <= 0:
        return order, []
    target = min(count - 1, max(1, round(count * val_fraction))) if count > 1 else 0

    images_of: dict[str, list[int]] = defaultdict(list)
    for index in order:  # shuffled order, so the "first image of a class" is a seeded random pick
        for label in sorted(image_labels[index]):
            images_of[label].append(index)

    in_train = {label: len(members) for label, members in images_of.items()}
    val: set[int] = set()

    def movable(index: int) -> bool:
        """Moving it to val leaves every (multi-image) class of it at least one train image."""
        return all(in_train[label] > 1 or len(images_of[label]) < 2 for label in image_labels[index])

    def move(index: int) -> None:
        val.add(index)
        for label in image_labels[index]:
            in_train[label] -= 1

    # Rarest classes first, so their few images are placed before common classes fill the quota.
    # Class coverage wins over the exact fraction: val may end up a little larger than asked.
    for label in sorted(images_of, key=lambda name: (len(images_of[name]), name)):
        members = images_of[label]
        if len(members) < 2 or any(i in val for i in members):
            continue
        candidate = next((i for i in members if movable(i)), None)
        if candidate is not None:
            move(candidate)
    for index in order:
        if len(val) >= target:
            break
        if index not in val and movable(index):
            move(index)

    train = [i for i in order if i not in val]
    return train, [i for i in order if i in val]
