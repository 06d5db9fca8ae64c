"""Confusion matrix and IoU against hand-computed examples and a brute-force count."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fusionsam_model.data.classes import FMB, MFNET
from fusionsam_model.evaluation.metrics import ConfusionMatrix


def test_hand_computed_three_classes() -> None:
    label = np.array([[0, 0, 1, 1], [2, 2, 1, 0]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 0]])
    cm = ConfusionMatrix(num_classes=3)
    cm.update(pred, label)
    # rows = label, cols = pred
    expected = np.array([[2, 1, 0], [1, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.matrix.dtype == np.int64
    # IoU = tp / (row + col - tp): class0 2/(3+4-2), class1 2/(3+3-2), class2 1/(2+1-1)
    np.testing.assert_allclose(cm.iou(), [2 / 5, 2 / 4, 1 / 2])
    assert cm.miou() == pytest.approx((2 / 5 + 2 / 4 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(5 / 8)


def test_absent_classes_are_nan_and_skipped() -> None:
    cm = ConfusionMatrix(num_classes=4)
    label = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 predicted but absent from labels, class 3 nowhere
    cm.update(pred, label)
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == 1.0
    assert iou[2] == 0.0  # a false positive class still counts
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_ignore_index_fmb_protocol() -> None:
    cm = ConfusionMatrix(FMB)
    assert (
        cm.num_classes == 15
        and cm.ignore_index == 0
        and len(cm.scored) == 14
        and 0 not in cm.scored
    )
    label = np.array([0, 0, 1, 1, 8, 8])
    pred = np.array([5, 1, 1, 0, 8, 8])
    cm.update(pred, label)
    # the two label-0 pixels are dropped whatever was predicted; predicting 0 on a road
    # pixel is a miss for road
    expected = np.zeros((15, 15), np.int64)
    expected[1, 1], expected[1, 0], expected[8, 8] = 1, 1, 2
    np.testing.assert_array_equal(cm.matrix, expected)
    iou = cm.iou()
    assert iou[1] == pytest.approx(1 / 2) and iou[8] == 1.0
    assert math.isnan(iou[0]) and math.isnan(iou[5])
    assert cm.miou() == pytest.approx(0.75)


def test_mfnet_protocol_scores_unlabeled() -> None:
    cm = ConfusionMatrix(MFNET)
    assert cm.ignore_index is None and cm.scored == tuple(range(9))
    label = np.array([[0, 0], [2, 2]])
    pred = np.array([[0, 2], [2, 2]])
    cm.update(pred, label)
    assert cm.matrix[0, 2] == 1
    assert cm.miou() == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_matches_brute_force_count() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 6, (2, 17, 23))
    label[0, :3] = 255
    pred = rng.integers(0, 6, (2, 17, 23))
    cm = ConfusionMatrix(num_classes=6, ignore_index=255)
    cm.update(pred, label)
    brute = np.zeros((6, 6), np.int64)
    for t, p in zip(label.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if t != 255:
            brute[t, p] += 1
    np.testing.assert_array_equal(cm.matrix, brute)


def test_merge_equals_one_pass_and_reset() -> None:
    rng = np.random.default_rng(1)
    label, pred = rng.integers(0, 9, (40, 30)), rng.integers(0, 9, (40, 30))
    whole = ConfusionMatrix(MFNET)
    whole.update(pred, label)
    day, night = ConfusionMatrix(MFNET), ConfusionMatrix(MFNET)
    day.update(pred[:25], label[:25])
    night.update(pred[25:], label[25:])
    both = day + night
    np.testing.assert_array_equal(both.matrix, whole.matrix)
    assert day.matrix.sum() == 25 * 30  # __add__ leaves its operands alone
    day += night
    np.testing.assert_array_equal(day.matrix, whole.matrix)
    acc = ConfusionMatrix(MFNET).merge(whole.matrix)  # raw counts, as from an all_reduce
    np.testing.assert_array_equal(acc.matrix, whole.matrix)
    with pytest.raises(ValueError, match="cannot merge"):
        day.merge(ConfusionMatrix(FMB))
    day.reset()
    assert day.matrix.sum() == 0 and math.isnan(day.miou())


def test_bad_inputs_raise() -> None:
    cm = ConfusionMatrix(MFNET)
    with pytest.raises(ValueError, match=r"prediction shape \(2, 3\) != label shape \(4, 6\)"):
        cm.update(np.zeros((2, 3)), np.zeros((4, 6)))
    with pytest.raises(ValueError, match="label has id 9"):
        cm.update(np.zeros((2, 2), np.uint8), np.full((2, 2), 9, np.uint8))
    with pytest.raises(ValueError, match="prediction has id 12"):
        cm.update(np.full((2, 2), 12, np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix()


def test_to_dict_names_and_json() -> None:
    cm = ConfusionMatrix(FMB)
    cm.update(np.array([1, 1, 2]), np.array([1, 2, 2]))
    d = cm.to_dict()
    assert list(d["iou"]) == list(FMB.names)
    assert d["iou"]["road"] == pytest.approx(1 / 2) and d["iou"]["sky"] is None
    assert d["miou"] == pytest.approx(1 / 2) and d["pixels"] == 3
    assert d["scored"] == list(FMB.names[1:]) and d["protocol"] == FMB.protocol
    assert json.loads(json.dumps(d)) == d
    positional = ConfusionMatrix(3)
    assert positional.to_dict()["iou"] == {"class_0": None, "class_1": None, "class_2": None}
