"""Named scoring protocols: mfnet (9 ids), fmb14 (id 0 ignored), fmb15 (all 15 ids)."""

from __future__ import annotations

import numpy as np
import pytest

from fusionsam_model.data.classes import get_class_table
from fusionsam_model.evaluation.metrics import ConfusionMatrix
from fusionsam_model.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, score


def _random_matrix(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50, size=(n, n)) + np.diag(rng.integers(100, 400, size=n))


def test_mfnet_protocol_equals_the_class_table_metric() -> None:
    table = get_class_table("mfnet")
    m = _random_matrix(9)
    cm = ConfusionMatrix(table)
    cm.merge(m)
    got = score(m, table.names, "mfnet")
    assert got["miou"] == pytest.approx(cm.miou())
    assert got["iou"]["unlabeled"] is not None  # scored as a class


def test_fmb14_ignores_background_label_pixels_and_fmb15_scores_them() -> None:
    table = get_class_table("fmb")
    m = _random_matrix(15, seed=1)
    s14, s15 = score(m, table.names, "fmb14"), score(m, table.names, "fmb15")
    assert s14["iou"][table.names[0]] is None and s15["iou"][table.names[0]] is not None
    # fmb14 = the class table's own protocol on the same counts
    cm = ConfusionMatrix(table)
    m_ignored = m.copy()
    m_ignored[0, :] = 0
    cm.merge(m_ignored)
    assert s14["miou"] == pytest.approx(cm.miou())
    # by hand for fmb15: mean over all 15 IoUs
    tp = np.diag(m).astype(float)
    iou = tp / (m.sum(0) + m.sum(1) - tp)
    assert s15["miou"] == pytest.approx(iou.mean())
    assert s14["miou"] != pytest.approx(s15["miou"])


def test_absent_class_drops_out_and_bad_input_is_refused() -> None:
    names = get_class_table("fmb").names
    m = _random_matrix(15, seed=2)
    m[5, :] = 0
    m[:, 5] = 0
    assert score(m, names, "fmb15")["iou"][names[5]] is None
    with pytest.raises(ValueError, match="unknown protocol"):
        score(m, names, "fmb16")
    with pytest.raises(ValueError, match="square matrix"):
        score(np.zeros((9, 9)), names, "fmb15")


def test_defaults_name_protocols_of_their_table() -> None:
    for table, name in DEFAULT_PROTOCOL.items():
        assert PROTOCOLS[name].class_table == table
    assert DEFAULT_PROTOCOL["fmb"] == "fmb15"  # comparable with the paper's Table 3 peers
