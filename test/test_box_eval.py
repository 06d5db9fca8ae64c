"""Box-level evaluation: its numbers equal a plain re-implementation, box files are read
strictly, label sets merge at IoU > 0.5, msrs_dev splits by name range."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionsam_model.data.box_datasets import (
    MSRS_BOX_MAP,
    BoxDataset,
    BoxLabels,
    msrs_dev_split,
    select_names,
)
from fusionsam_model.data.boxes import (
    BoxLabelError,
    merge_label_sets,
    parse_box_map,
    read_label_set,
    read_yolo_dir,
)
from fusionsam_model.data.classes import MFNET
from fusionsam_model.evaluation.box_metrics import (
    BoxScores,
    evaluate_boxes,
    hottest_person,
    pixel_rect,
)

REPO = Path(__file__).resolve().parents[1]
MSRS = REPO.parent / "shared" / "data" / "msrs_dev"
needs_msrs = pytest.mark.skipif(
    not (MSRS / "names.txt").is_file(), reason=f"{MSRS} is absent (real msrs_dev frames)"
)
CAR, PERSON, BIKE = 1, 2, 3
YOLO_TO_MFNET = {0: PERSON, 1: BIKE, 2: CAR}  # msrs_dev classes.txt: 0 person, 1 bicycle, 2 car


# ---------------------------------------------------------------- plain re-implementation


def plain_in_box(r: int, c: int, box, grow: bool = False) -> bool:
    """Pixel (r, c) belongs to a box when its centre lies in [x1, x2) x [y1, y2)."""
    x1, y1, x2, y2 = box[:4]
    if grow:
        dx, dy = 0.1 * (x2 - x1) + 2, 0.1 * (y2 - y1) + 2
        x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    return x1 <= c + 0.5 < x2 and y1 <= r + 0.5 < y2


def plain_counts(frames, classes=(CAR, PERSON, BIKE)) -> dict[int, list[int]]:
    """Per class [boxes, hit, predicted pixels, predicted pixels in a grown box], looping
    over every pixel of every frame (frames: [(pred, boxes)])."""
    out = {c: [0, 0, 0, 0] for c in classes}
    for pred, boxes in frames:
        h, w = pred.shape
        for c in classes:
            own = [b for b in boxes if int(b[4]) == c]
            for b in own:
                area = sum(plain_in_box(r, x, b) for r in range(h) for x in range(w))
                on = sum(
                    plain_in_box(r, x, b) and pred[r, x] == c for r in range(h) for x in range(w)
                )
                out[c][0] += 1
                out[c][1] += int(on >= 0.15 * area)
            for r in range(h):
                for x in range(w):
                    if pred[r, x] == c:
                        out[c][2] += 1
                        out[c][3] += int(any(plain_in_box(r, x, b, grow=True) for b in own))
    return out


def grid_counts(frames, classes=(CAR, PERSON, BIKE)) -> dict[int, list[int]]:
    """The same definition with the centre test on a coordinate grid (for 640x480 frames)."""
    out = {c: [0, 0, 0, 0] for c in classes}
    for pred, boxes in frames:
        h, w = pred.shape
        xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
        for c in classes:
            grown_union = np.zeros((h, w), bool)
            for x1, y1, x2, y2, cls in boxes:
                if int(cls) != c:
                    continue
                inside = ((ys >= y1) & (ys < y2))[:, None] & ((xs >= x1) & (xs < x2))[None, :]
                out[c][0] += 1
                out[c][1] += int((inside & (pred == c)).sum() >= 0.15 * inside.sum())
                dx, dy = 0.1 * (x2 - x1) + 2, 0.1 * (y2 - y1) + 2
                grown_union |= ((ys >= y1 - dy) & (ys < y2 + dy))[:, None] & (
                    (xs >= x1 - dx) & (xs < x2 + dx)
                )[None, :]
            out[c][2] += int((pred == c).sum())
            out[c][3] += int(((pred == c) & grown_union).sum())
    return out


def plain_f1(counts: list[int]) -> float | None:
    boxes, hit, pred, inside = counts
    if boxes == 0:
        return None
    recall = hit / boxes
    precision = inside / pred if pred else 0.0
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def plain_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def plain_boxes(name: str, w: int, h: int) -> list[list[float]]:
    """msrs_dev's three YOLO files of a frame, parsed by hand and merged (earlier set wins)."""
    kept: list[list[float]] = []
    for label_set in ("visible", "infrared", "fusion"):
        new = []
        for line in (MSRS / "boxes" / label_set / f"{name}.txt").read_text().splitlines():
            if not line.strip():
                continue
            k, cx, cy, bw, bh = line.split()
            cx, cy, bw, bh = float(cx), float(cy), float(bw), float(bh)
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
            box = [min(max(v, 0.0), lim) for v, lim in zip(box, (w, h, w, h), strict=True)]
            cls = YOLO_TO_MFNET[int(k)]
            if not any(c == cls and plain_iou(box, b) > 0.5 for *b, c in kept):
                new.append([*box, cls])
        kept += new
    return kept


def assert_summary_equals(summary: dict, counts: dict[int, list[int]]) -> None:
    names = {CAR: "car", PERSON: "person", BIKE: "bike"}
    f1s = []
    for c, (boxes, hit, pred, inside) in counts.items():
        got = summary["classes"][names[c]]
        assert (got["boxes"], got["hit"], got["pred_pixels"], got["inside"]) == (
            boxes,
            hit,
            pred,
            inside,
        ), names[c]
        f1 = plain_f1(counts[c])
        assert got["f1"] == pytest.approx(f1) if f1 is not None else got["f1"] is None
        if f1 is not None:
            f1s.append(f1)
    assert summary["mean_f1"] == pytest.approx(sum(f1s) / len(f1s))


# ---------------------------------------------------------------- metrics


def random_frame(rng: np.random.Generator, h: int = 18, w: int = 26):
    pred = rng.choice([0, CAR, PERSON, BIKE], size=(h, w), p=[0.4, 0.2, 0.25, 0.15]).astype(
        np.uint8
    )
    boxes = []
    for _ in range(int(rng.integers(2, 6))):
        x1, y1 = rng.uniform(-1, w - 4), rng.uniform(-1, h - 4)
        x2, y2 = x1 + rng.uniform(2.2, w / 2), y1 + rng.uniform(2.2, h / 2)
        boxes.append([max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h), rng.choice([1, 2, 3])])
    return pred, np.asarray(boxes, dtype=np.float64)


def test_scores_equal_a_per_pixel_loop_on_synthetic_frames():
    rng = np.random.default_rng(3)
    frames = {f"{i:05d}{'DN'[i % 2]}": random_frame(rng) for i in range(1, 7)}
    scores = BoxScores(MFNET)
    for name, (pred, boxes) in frames.items():
        scores.add(name, pred, boxes)
    summaries = scores.summaries()
    assert_summary_equals(summaries["all"], plain_counts(frames.values()))
    day = [f for n, f in frames.items() if n.endswith("D")]
    night = [f for n, f in frames.items() if n.endswith("N")]
    assert_summary_equals(summaries["day"], plain_counts(day))
    assert_summary_equals(summaries["night"], plain_counts(night))
    assert summaries["day"]["frames"] == 3 and summaries["night"]["frames"] == 3
    # the plain loop and the grid version agree too (the grid one checks the real frames)
    assert plain_counts(frames.values()) == grid_counts(frames.values())


def test_hand_made_frame_has_the_numbers_worked_out_by_hand():
    """10x10 box of person, 15 of its 100 pixels person: found (exactly 15 %); 14: not.
    Person pixels 1 px beyond the box lie within the grown box (10 % of 10 + 2 = 3 px)."""
    pred = np.zeros((40, 40), np.uint8)
    box = np.array([[10.0, 10.0, 20.0, 20.0, PERSON]])
    pred[10, 10:20] = PERSON  # 10 pixels inside
    pred[11, 10:15] = PERSON  # 5 more: 15 of 100
    pred[22, 10:20] = PERSON  # 10 pixels 2 rows below: inside the grown box
    pred[30, 30:35] = PERSON  # 5 pixels far away: outside
    s = BoxScores(MFNET)
    s.add("00001D", pred, box)
    person = s.summary()["classes"]["person"]
    assert (person["hit"], person["pred_pixels"], person["inside"]) == (1, 30, 25)
    assert person["precision"] == pytest.approx(25 / 30)
    assert person["f1"] == pytest.approx(2 * (25 / 30) / (1 + 25 / 30))
    pred[11, 14] = 0  # 14 %: missed
    s = BoxScores(MFNET)
    s.add("00001D", pred, box)
    assert s.summary()["classes"]["person"]["hit"] == 0
    assert s.summary()["classes"]["person"]["f1"] == 0.0
    assert s.summary()["classes"]["car"]["f1"] is None  # no car boxes: not in the mean
    assert s.summary()["mean_over"] == ["person"]


def test_box_pixels_are_those_whose_centre_is_inside():
    assert pixel_rect([10.5, 10.5, 12.5, 12.5, PERSON], 40, 40) == (10, 10, 12, 12)
    # x: only the centre 11.5 lies in [10.6, 12.4); y: no centre in [3.0, 3.2): one row
    assert pixel_rect([10.6, 3.0, 12.4, 3.2, PERSON], 40, 40) == (11, 3, 12, 4)
    assert pixel_rect([-5, -5, 50, 50, PERSON], 30, 40) == (0, 0, 40, 30)
    assert pixel_rect([10, 10, 20, 20, PERSON], 40, 40, grow=True) == (7, 7, 23, 23)
    assert pixel_rect([0, 0, 10, 40, PERSON], 40, 40, grow=True) == (0, 0, 13, 40)


@needs_msrs
def test_scores_on_three_real_frames_equal_an_independent_recomputation():
    names = ["00012N", "00099D", "00790N"]  # night, day, night (held-out part)
    dataset = BoxDataset(MSRS, names)
    table = MFNET

    def bands(rgb, thermal):  # a second rule that predicts all three classes
        out = np.zeros(thermal.shape, np.uint8)
        out[thermal > 120] = BIKE
        out[thermal > 150] = CAR
        out[thermal > 200] = PERSON
        return out

    variants = {"ref": lambda rgb, t: hottest_person(t, table), "bands": bands}
    result = evaluate_boxes(dataset, variants, table)
    frames = {v: [] for v in variants}
    for name in names:
        thermal = cv2.imread(str(MSRS / "ir" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        h, w = thermal.shape
        boxes = plain_boxes(name, w, h)
        assert len(boxes) == len(dataset.labels.boxes[name])
        hot = thermal >= np.percentile(thermal, 98)
        frames["ref"].append((np.where(hot, PERSON, 0), boxes))
        frames["bands"].append((bands(None, thermal), boxes))
    for v in variants:
        assert_summary_equals(result["variants"][v]["all"], grid_counts(frames[v]))
        assert_summary_equals(result["variants"][v]["night"], grid_counts(frames[v][::2]))
    assert result["variants"]["bands"]["all"]["classes"]["car"]["boxes"] > 0


# ---------------------------------------------------------------- reading box files


def write_set(folder: Path, files: dict[str, str], classes: str = "person\nbicycle\ncar\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text(classes)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


GOOD = "0 0.5 0.5 0.2 0.2\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields"),
        ("0 0.5 0.5 0.2 0.2 0.9", "expected 5 fields"),
        ("0 0.5 abc 0.2 0.2", "non-numeric"),
        ("person 0.5 0.5 0.2 0.2", "not an integer"),
        ("0 1.2 0.5 0.2 0.2", "outside [0, 1]"),
        ("0 0.5 0.5 -0.1 0.2", "outside [0, 1]"),
        ("0 0.95 0.5 0.2 0.2", "outside [0, 1]"),  # right edge at 1.05
        ("0 0.5 0.5 0.0 0.2", "no area"),
        ("3 0.5 0.5 0.2 0.2", "unknown class id 3"),
        ("0 nan 0.5 0.2 0.2", "outside [0, 1]"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    folder = write_set(tmp_path / "set", {"00001D": GOOD + "\n" + line + "\n"})
    with pytest.raises(BoxLabelError) as err:
        read_yolo_dir(folder, ["00001D"])
    text = str(err.value)
    assert f"{folder / '00001D.txt'}:3:" in text  # line 3: the blank line 2 is counted
    assert message in text


def test_malformed_file_stops_the_cli_with_file_and_line(tmp_path, tiny_checkpoint):
    root = make_pairs(tmp_path, ["00001D"])
    bad = write_set(root / "boxes" / "a", {"00001D": "0 0.5 0.5 0.2\n"})
    proc = run_cli(tiny_checkpoint, root, [bad], "all")
    assert proc.returncode == 2
    assert f"{bad / '00001D.txt'}:1: expected 5 fields" in proc.stderr


def test_missing_file_is_no_objects_and_counted(tmp_path):
    a = write_set(tmp_path / "a", {"00001D": GOOD, "00002N": GOOD})
    b = write_set(tmp_path / "b", {"00001D": "2 0.2 0.2 0.1 0.1\n"})
    labels = BoxLabels.load([a, b], ["00001D", "00002N", "00003N"], MSRS_BOX_MAP)
    assert labels.missing == {"a": ["00003N"], "b": ["00002N", "00003N"]}
    assert labels.frames_without_file == ["00003N"]
    assert labels.boxes["00003N"].shape == (0, 5)
    assert labels.boxes["00002N"][:, 4].tolist() == [PERSON]
    assert sorted(labels.boxes["00001D"][:, 4].tolist()) == [CAR, PERSON]


def test_coco_json_reads_like_the_yolo_file(tmp_path):
    yolo = write_set(tmp_path / "yolo", {"00001D": "0 0.5 0.5 0.25 0.5\n2 0.1 0.2 0.2 0.4\n"})
    coco = {
        "images": [{"id": 7, "file_name": "00001D.png", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"},
                       {"id": 3, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [240, 120, 160, 240]},
                        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 128, 192]}],
    }  # fmt: skip
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    names = ["00001D", "00002D"]
    from_yolo, from_coco = read_label_set(yolo, names), read_label_set(path, names)
    assert from_coco.class_names == from_yolo.class_names
    np.testing.assert_allclose(from_coco.boxes["00001D"], from_yolo.boxes["00001D"], atol=1e-9)
    assert from_coco.missing == ["00002D"]
    coco["annotations"][1]["category_id"] = 9
    path.write_text(json.dumps(coco))
    with pytest.raises(BoxLabelError, match=r"instances.json: annotation 1 .*category_id 9"):
        read_label_set(path, names)


def test_box_map_errors_name_the_class():
    classes = ("person", "bicycle", "car")
    assert parse_box_map(MSRS_BOX_MAP, classes, MFNET) == {0: PERSON, 1: BIKE, 2: CAR}
    with pytest.raises(ValueError, match="'truck' is not a box class"):
        parse_box_map("truck=car", classes, MFNET)
    with pytest.raises(ValueError, match="'bicycle' is not a class of the mfnet table"):
        parse_box_map("bicycle=bicycle", classes, MFNET)
    with pytest.raises(ValueError, match="BOX_CLASS=TABLE_CLASS"):
        parse_box_map("person", classes, MFNET)


# ---------------------------------------------------------------- merging label sets


def test_label_sets_merge_same_class_above_iou_half():
    first = np.array([[0, 0, 10, 10, PERSON], [50, 50, 60, 60, CAR]], float)
    second = np.array(
        [
            [0, 0, 10, 6, PERSON],  # IoU 0.6 with the first person: the same object
            [0, 0, 10, 5, PERSON],  # IoU exactly 0.5: another object
            [50, 50, 60, 57, BIKE],  # IoU 0.7 with the car, other class: another object
            [100, 100, 110, 110, CAR],  # new
        ],
        float,
    )
    third = np.array([[0, 0, 10, 4.9, PERSON]], float)  # IoU 0.98 with the second set's 0.5 box
    merged = merge_label_sets([first, second, third])
    assert merged.tolist() == [*first.tolist(), *second[1:].tolist()]
    assert plain_iou(first[0], second[0]) == pytest.approx(0.6)
    # boxes within one set are never merged, however much they overlap
    assert len(merge_label_sets([np.vstack([first[0], first[0]])])) == 2


# ---------------------------------------------------------------- the held-out split


def test_split_holds_out_the_2nd_and_5th_of_six_blocks_with_guards():
    day = [f"{i:05d}D" for i in range(10, 22)]  # 12 names -> blocks of 2
    night = [f"{i:05d}N" for i in (4, 8, 12, 16, 681, 686)]  # 6 names -> blocks of 1
    names = day + night
    random.Random(0).shuffle(names)
    train, holdout = msrs_dev_split(names)
    # day blocks [10,11] [12,13] [14,15] [16,17] [18,19] [20,21]: hold 12-13 and 18-19,
    # guards 11, 14, 17, 20; night: hold 8 and 681, guards 4, 12, 16, 686
    assert holdout == ["00008N", "00012D", "00013D", "00018D", "00019D", "00681N"]
    assert train == ["00010D", "00015D", "00016D", "00021D"]
    assert not set(train) & set(holdout)
    assert msrs_dev_split(list(reversed(names))) == (train, holdout)
    # fewer than six names: some blocks are empty; two names fall in blocks 2 and 5
    assert msrs_dev_split(["00001D", "00002D"]) == ([], ["00001D", "00002D"])
    with pytest.raises(ValueError, match="without a D"):
        msrs_dev_split(["00001D", "frame7"])


@needs_msrs
def test_msrs_dev_split_holds_out_13_day_and_16_night_frames():
    names = select_names(MSRS, "all")
    train, holdout = msrs_dev_split(names)
    assert (len(train), len(holdout)) == (54, 29)
    day = sorted(n for n in names if n.endswith("D"))
    night = sorted(n for n in names if n.endswith("N"))
    assert holdout == sorted(day[6:13] + day[26:32] + night[9:17] + night[35:43])
    guards = {day[5], day[13], day[25], day[32], night[8], night[17], night[34], night[43]}
    assert set(train) == set(names) - set(holdout) - guards
    # both parts hold bicycles by day (the reason for two blocks)
    assert {"00196D", "00200D"} <= set(holdout) and {"00229D", "00233D"} <= set(train)
    assert select_names(MSRS, "holdout") == holdout and select_names(MSRS, "train") == train


# ---------------------------------------------------------------- the reader and the CLI


def make_pairs(tmp_path: Path, names: list[str], h: int = 48, w: int = 64) -> Path:
    """A tiny msrs_dev-like folder: vi/ RGB, ir/ grey, boxes/classes.txt, names.txt."""
    root = tmp_path / "pairs"
    rng = np.random.default_rng(1)
    for sub in ("vi", "ir", "boxes"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(root / "vi" / f"{name}.png"), rng.integers(0, 256, (h, w, 3), np.uint8))
        cv2.imwrite(str(root / "ir" / f"{name}.png"), rng.integers(0, 256, (h, w), np.uint8))
    (root / "boxes" / "classes.txt").write_text("0 person\n1 bicycle\n2 car\n")
    (root / "names.txt").write_text("\n".join(names) + "\n")
    return root


def run_cli(checkpoint: Path, root: Path, boxes: list[Path], names: str, *extra: str):
    return subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--checkpoint", str(checkpoint),
         "--boxes", *map(str, boxes), "--images-root", str(root), "--names", names,
         *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_reader_gives_rgb_thermal_and_pixel_boxes(tmp_path):
    root = make_pairs(tmp_path, ["00001D", "00002N"])
    write_set(root / "boxes" / "v", {"00001D": "2 0.5 0.25 0.5 0.5\n"}, classes="")
    (root / "boxes" / "v" / "classes.txt").unlink()  # the shared boxes/classes.txt is used
    ds = BoxDataset(root, label_sets=["v"])
    assert ds.names == ["00001D", "00002N"] and len(ds) == 2
    s = ds[0]
    bgr = cv2.imread(str(root / "vi" / "00001D.png"))
    np.testing.assert_array_equal(s.rgb, bgr[..., ::-1])
    assert s.thermal.shape == (48, 64) and s.thermal.dtype == np.uint8
    np.testing.assert_allclose(s.boxes, [[16, 0, 48, 24, CAR]])
    assert ds[1].boxes.shape == (0, 5)
    assert ds.labels.missing == {"v": ["00002N"]}


def test_cli_json_equals_the_segmenter_scored_by_the_plain_loop(tmp_path, tiny_checkpoint):
    from fusionsam_model.runtime.segmenter import Segmenter

    names = ["00001D", "00002D", "00003N"]
    root = make_pairs(tmp_path, names, h=24, w=32)
    a = write_set(root / "boxes" / "a", {"00001D": "0 0.5 0.5 0.5 0.5\n2 0.2 0.3 0.3 0.4\n",
                                         "00003N": "1 0.7 0.6 0.4 0.6\n"})  # fmt: skip
    b = write_set(root / "boxes" / "b", {"00001D": "0 0.52 0.5 0.5 0.5\n",  # same person
                                         "00002D": "0 0.3 0.3 0.2 0.2\n"})  # fmt: skip
    proc = run_cli(tiny_checkpoint, root, [a, b], "all", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["missing_box_files"] == {"a": 1, "b": 1}
    assert result["frames_without_box_file"] == []
    seg = Segmenter.from_checkpoint(tiny_checkpoint)
    ds = BoxDataset(root, names, [a, b])
    assert len(ds[0].boxes) == 2  # the two person boxes (IoU 0.92) are one object
    frames = {"model": [], "RGB zeroed": [], "thermal zeroed": [], "hottest 2% = person": []}
    for sample in (ds[i] for i in range(len(ds))):
        rgb, t, boxes = sample.rgb, sample.thermal, sample.boxes
        frames["model"].append((seg.predict(rgb, t).labels, boxes))
        frames["RGB zeroed"].append((seg.predict(np.zeros_like(rgb), t).labels, boxes))
        frames["thermal zeroed"].append((seg.predict(rgb, np.zeros_like(t)).labels, boxes))
        frames["hottest 2% = person"].append((hottest_person(t, MFNET), boxes))
    assert set(result["variants"]) == set(frames)
    for v, fr in frames.items():
        assert_summary_equals(result["variants"][v]["all"], plain_counts(fr))
        assert_summary_equals(result["variants"][v]["day"], plain_counts(fr[:2]))
    assert result["variants"]["model"]["night"]["frames"] == 1


def test_cli_needs_data_or_boxes():
    proc = subprocess.run(
        [sys.executable, "-m", "training.evaluate"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "either --data" in proc.stderr


# ---------------------------------------------------------------- streamed evaluation


def test_streamed_scorer_matches_masks_to_names_and_equals_offline_scores(tmp_path):
    from fusionsam_model.data.box_datasets import load_streamed_box_labels
    from fusionsam_ros.evaluation.stream_evaluator import BoxStreamScorer, summary_text

    names = ["00001D", "00002N", "00003N", "00004D"]
    a = write_set(tmp_path / "a", {"00001D": "0 0.5 0.5 0.5 0.5\n", "00002N": "2 0.3 0.3 0.4 0.4\n",
                                   "00004D": "1 0.6 0.6 0.5 0.5\n"})  # fmt: skip
    labels = load_streamed_box_labels([a])
    assert sorted(labels.boxes) == ["00001D", "00002N", "00004D"]  # 00003N: no file anywhere
    rng = np.random.default_rng(5)
    masks = {n: rng.choice([0, CAR, PERSON, BIKE], size=(24, 32)).astype(np.uint8) for n in names}
    scorer = BoxStreamScorer(labels)
    # mask before name, name before mask, and a mask whose name never comes
    scorer.add_prediction(10, masks["00001D"], arrival=1.0)
    scorer.add_name(10, "00001D", arrival=0.9)
    scorer.add_name(20, "00002N", arrival=2.0)
    scorer.add_prediction(20, masks["00002N"], arrival=2.05)
    scorer.add_name(30, "00003N", arrival=3.0)
    scorer.add_prediction(30, masks["00003N"], arrival=3.2)
    scorer.add_name(40, "00004D", arrival=4.0)  # dropped: no mask
    scorer.add_prediction(50, masks["00004D"], arrival=5.0)  # no name
    report = scorer.report()
    assert report["frames"] == {"names": 4, "scored": 3, "dropped": 1, "unnamed_masks": 1}
    assert report["frames_without_box_file"] == ["00003N"]
    assert [m["name"] for m in report["matched"]] == ["00001D", "00002N", "00003N"]
    assert [m["latency_ms"] for m in report["matched"]] == pytest.approx([100.0, 50.0, 200.0])
    offline = BoxScores(MFNET)
    frames = []
    for n in names[:3]:
        boxes = labels.pixels(n, 24, 32) if n in labels.boxes else np.zeros((0, 5))
        offline.add(n, masks[n], boxes)
        frames.append((masks[n], boxes))
    for split in ("all", "day", "night"):
        assert report[split] == offline.summary(split)
    assert_summary_equals(report["all"], plain_counts(frames))
    text = summary_text({"boxes": report, "latency_ms": {"p50": 100.0, "p99": 200.0},
                         "stop_reason": "count reached"})  # fmt: skip
    assert "3 masks scored against boxes of 4 named frames; 1 dropped" in text
    assert f"mean {report['all']['mean_f1']:.3f}" in text


def test_make_bag_writes_folder_pairs_with_names_and_no_label_topic(tmp_path):
    from rosbags.rosbag2 import Reader

    from fusionsam_ros.bags.writer import main as make_bag
    from fusionsam_ros.bags.writer import typestore

    names = ["00001D", "00002D", "00003D", "00004N", "00005N", "00006N"]
    root = make_pairs(tmp_path, names)
    bag = tmp_path / "bag"
    assert make_bag(["--data", str(root), "--layout", "pairs", "--names", "holdout",
                     "--out", str(bag)]) == 0  # fmt: skip
    with Reader(bag) as reader:
        topics = {c.topic for c in reader.connections}
        got = [
            typestore().deserialize_cdr(raw, c.msgtype).frame_id
            for c, _, raw in reader.messages()
            if c.topic == "label/name"
        ]
    assert topics == {"rgb/image", "thermal/image", "label/name"}
    assert got == ["00001D", "00004N"]  # 3 names a condition: only block 2 holds one
    assert make_bag(["--data", str(root), "--layout", "pairs", "--names", "nofile.txt",
                     "--out", str(tmp_path / "bag2")]) == 2  # fmt: skip
