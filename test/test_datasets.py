"""MFNet / FMB readers on generated fixtures, and every bad-file case naming the file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionsam_model.data.classes import FMB, MFNET
from fusionsam_model.data.conditions import is_night
from fusionsam_model.data.datasets import (
    DatasetError,
    FMBDataset,
    MFNetDataset,
    Sample,
    detect_layout,
    open_dataset,
)
from fusionsam_model.data.synth import generate


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    roots = {"mfnet": base / "mfnet", "fmb": base / "fmb"}
    generate(roots["mfnet"], 8, seed=3, progress=False)
    generate(roots["fmb"], 8, seed=3, layout="fmb", progress=False)
    return roots


@pytest.fixture()
def mfnet(pristine, tmp_path) -> Path:
    """A private copy that a test may damage."""
    return Path(shutil.copytree(pristine["mfnet"], tmp_path / "mfnet"))


@pytest.fixture()
def fmb(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine["fmb"], tmp_path / "fmb"))


def _match(path: Path) -> str:
    return re.escape(str(path))


def test_mfnet_reads_aligned_samples(pristine) -> None:
    root = pristine["mfnet"]
    ds = open_dataset(root, "train")
    assert isinstance(ds, MFNetDataset)
    assert (ds.root, ds.split, ds.class_table) == (root, "train", MFNET)
    assert ds.names == ["00001D", "00002N", "00003D", "00004N"]
    assert len(ds) == 4
    sample = ds[0]
    assert isinstance(sample, Sample) and sample.name == "00001D"
    assert sample.rgb.shape == (480, 640, 3) and sample.rgb.dtype == np.uint8
    assert sample.thermal.shape == (480, 640) and sample.thermal.dtype == np.uint8
    assert sample.label.shape == (480, 640) and sample.label.dtype == np.uint8
    bgra = cv2.imread(str(root / "images" / "00001D.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(sample.rgb, bgra[..., 2::-1])
    np.testing.assert_array_equal(sample.thermal, bgra[..., 3])
    np.testing.assert_array_equal(sample.label, cv2.imread(str(root / "labels" / "00001D.png"), 0))
    sky = sample.rgb[:20].reshape(-1, 3).mean(axis=0)  # a day sky is blue: RGB order, not BGR
    assert sky[2] > sky[0] + 20
    assert [s.name for s in open_dataset(root, "test_night", layout="mfnet")] == ["00008N"]
    assert len(open_dataset(root, "val", layout="synth")) == 2


def test_fmb_reads_aligned_samples(pristine) -> None:
    root = pristine["fmb"]
    train, test = open_dataset(root, "train"), open_dataset(root, "test", layout="fmb")
    assert isinstance(train, FMBDataset) and train.class_table is FMB
    assert (len(train), len(test)) == (6, 2)
    assert test.names == ["00007D", "00008N"]
    sample = test[1]
    assert sample.rgb.shape == (600, 800, 3) and sample.thermal.shape == (600, 800)
    assert sample.label.shape == (600, 800) and sample.label.max() < FMB.num_classes
    bgr = cv2.imread(str(root / "test" / "Visible" / "00008N.png"))
    np.testing.assert_array_equal(sample.rgb, bgr[..., ::-1])


def test_fmb_three_channel_and_16_bit_infrared(fmb) -> None:
    path = fmb / "train" / "Infrared" / "00001D.png"
    grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), cv2.merge([grey, grey, grey]))
    thermal = FMBDataset(fmb, "train")[0].thermal
    assert thermal.shape == grey.shape
    np.testing.assert_array_equal(thermal, grey)
    cv2.imwrite(str(path), grey.astype(np.uint16) * 200)
    thermal = FMBDataset(fmb, "train")[0].thermal
    assert thermal.dtype == np.uint16 and int(thermal.max()) == int(grey.max()) * 200


def test_is_night() -> None:
    assert is_night("00002N") and not is_night("00001D")


def test_missing_root(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    for call in (lambda: open_dataset(missing, "train"), lambda: MFNetDataset(missing, "train")):
        with pytest.raises(DatasetError, match=_match(missing)):
            call()
    with pytest.raises(DatasetError, match=_match(missing)):
        FMBDataset(missing, "train")


def test_unknown_layout(tmp_path) -> None:
    with pytest.raises(DatasetError, match=f"cannot tell the layout of {_match(tmp_path)}"):
        detect_layout(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset layout 'kitti'"):
        open_dataset(tmp_path, "train", layout="kitti")


def test_missing_split_file(mfnet) -> None:
    with pytest.raises(DatasetError, match=_match(mfnet / "holdout.txt")):
        open_dataset(mfnet, "holdout")


def test_split_names_absent_image(mfnet) -> None:
    with (mfnet / "train.txt").open("a") as f:
        f.write("09999D\n")
    with pytest.raises(DatasetError, match=_match(mfnet / "images" / "09999D.png")):
        open_dataset(mfnet, "train")


def test_missing_label(mfnet) -> None:
    (mfnet / "labels" / "00003D.png").unlink()
    with pytest.raises(DatasetError, match=_match(mfnet / "labels" / "00003D.png")):
        MFNetDataset(mfnet, "train")


def test_mfnet_size_mismatch(mfnet) -> None:
    label_path = mfnet / "labels" / "00002N.png"
    cv2.imwrite(str(label_path), np.zeros((240, 320), np.uint8))
    ds = MFNetDataset(mfnet, "train")
    with pytest.raises(DatasetError, match=f"differ in size.*{_match(label_path)} 320x240"):
        ds[1]


def test_mfnet_image_without_thermal_channel(mfnet) -> None:
    path = mfnet / "images" / "00001D.png"
    cv2.imwrite(str(path), np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(DatasetError, match=f"{_match(path)} must be RGBA"):
        MFNetDataset(mfnet, "train")[0]


def test_undecodable_image(mfnet) -> None:
    path = mfnet / "images" / "00001D.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=f"cannot decode image {_match(path)}"):
        MFNetDataset(mfnet, "train")[0]


@pytest.mark.parametrize("bad_id", [9, 255])
def test_mfnet_unexpected_label_id(mfnet, bad_id) -> None:
    path = mfnet / "labels" / "00001D.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[5:9, 5:9] = bad_id
    cv2.imwrite(str(path), label)
    with pytest.raises(DatasetError, match=f"{_match(path)} has unexpected ids \\[{bad_id}\\]"):
        MFNetDataset(mfnet, "train")[0]


def test_fmb_void_255_becomes_ignore_and_15_is_an_error(fmb) -> None:
    path = fmb / "test" / "Label" / "00007D.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[:10] = 255
    cv2.imwrite(str(path), label)
    sample = FMBDataset(fmb, "test")[0]
    assert (sample.label[:10] == FMB.ignore_index).all()
    np.testing.assert_array_equal(sample.label[10:], label[10:])
    label[20:30] = 15
    cv2.imwrite(str(path), label)
    with pytest.raises(DatasetError, match=f"{_match(path)} has unexpected ids \\[15\\]"):
        FMBDataset(fmb, "test")[0]


def test_fmb_size_mismatch_between_visible_and_infrared(fmb) -> None:
    path = fmb / "train" / "Infrared" / "00003D.png"
    cv2.imwrite(str(path), np.zeros((300, 400), np.uint8))
    ds = FMBDataset(fmb, "train")
    with pytest.raises(DatasetError, match=f"sample 00003D: .*{_match(path)} 400x300"):
        ds[ds.names.index("00003D")]


def test_fmb_size_mismatch_label(fmb) -> None:
    path = fmb / "test" / "Label" / "00008N.png"
    cv2.imwrite(str(path), np.zeros((600, 801), np.uint8))
    with pytest.raises(DatasetError, match=f"{_match(path)} 801x600"):
        FMBDataset(fmb, "test")[1]


def test_fmb_missing_partner_and_split(fmb) -> None:
    path = fmb / "train" / "Label" / "00005D.png"
    path.unlink()
    with pytest.raises(DatasetError, match=_match(path)):
        FMBDataset(fmb, "train")
    with pytest.raises(DatasetError, match=_match(fmb / "val" / "Visible")):
        open_dataset(fmb, "val")
