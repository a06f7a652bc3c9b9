from __future__ import annotations

import random

import pytest

from odstack.data.split import split_indices


def _dataset(seed: int, count: int, classes: int) -> list[set[str]]:
    rng = random.Random(seed)
    labels = []
    for _ in range(count):
        k = rng.choice([0, 1, 1, 2])  # some negatives, some multi-class images
        labels.append({f"c{rng.randrange(classes)}" for _ in range(k)})
    return labels


def test_same_seed_same_split_and_different_seed_differs():
    data = _dataset(0, 200, 5)
    assert split_indices(data, 0.2, 7) == split_indices(data, 0.2, 7)
    assert split_indices(data, 0.2, 7) != split_indices(data, 0.2, 8)


@pytest.mark.parametrize("seed", range(30))
def test_every_class_with_two_images_is_in_both_splits(seed):
    data = _dataset(seed, random.Random(seed).randrange(5, 60), classes=12)
    train, val = split_indices(data, 0.2, seed)
    assert sorted(train + val) == list(range(len(data)))
    assert not set(train) & set(val)
    for label in set().union(*data):
        holders = [i for i, labels in enumerate(data) if label in labels]
        if len(holders) >= 2:
            assert any(i in train for i in holders) and any(i in val for i in holders), label


def test_fraction_is_respected_and_negatives_are_split():
    data = [set()] * 50 + [{"a"}] * 50
    train, val = split_indices(data, 0.2, 1)
    assert len(val) == 20
    negatives_in_val = sum(1 for i in val if not data[i])
    assert 3 <= negatives_in_val <= 17


def test_zero_fraction_and_single_image():
    assert split_indices([{"a"}, {"b"}], 0.0, 1)[1] == []
    train, val = split_indices([{"a"}], 0.5, 1)
    assert (train, val) == ([0], [])
