"""Streaming evaluation of a running node (`fusionsam-evaluate`).

Subscribes to the label topic of a replayed bag and to the node's mask, pairs them by
exact stamp (the node copies the RGB header onto its mask; the bag gives labels the
RGB stamp) and accumulates the same ``ConfusionMatrix`` the offline evaluation uses,
so with no frame dropped the streaming mIoU equals ``training/evaluate.py`` exactly.

Latency is measured inside this process as *mask arrival - label arrival* for the same
stamp. A replayed bag carries the recording's stamps, which are far in the past, so
"stamp to mask" is taken from the moment the frame with that stamp went on the wire:
the player publishes the label together with the RGB image. This covers pairing wait,
inference and transport, as a consumer of the mask sees it.

Sample names come from the bag's ``label/name`` topic (std_msgs/Header, frame_id =
name, same stamp); MFNet-style names (…D / …N) give the day/night split.

A drive without labels (real camera pairs, ``--no-labels``) is not scored: the report
then gives the mask rate and keeps a sample of overlay and fused frames for inspection.

With ``--boxes DIR [DIR ...]`` the masks are scored against box labels instead
(``evaluation.box_metrics``, as ``training/evaluate.py --boxes``): a mask is matched to its
sample name by exact stamp on ``label/name`` and the name to the boxes of that image, so
a bag of real pairs without pixel labels (``fusionsam-make-bag --layout pairs``) needs no
other topic. A name without a box file in any label set counts as a frame without objects.
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionsam_model.data.box_datasets import MSRS_BOX_MAP, BoxLabels, load_streamed_box_labels
from fusionsam_model.data.classes import ClassTable, get_class_table
from fusionsam_model.data.conditions import CONDITIONS, condition_of
from fusionsam_model.evaluation.box_metrics import BoxScores, format_box_table
from fusionsam_model.evaluation.fusion_metrics import FusionMeter, compute_no_reference
from fusionsam_model.evaluation.scoring import SPLITS, SplitScores, json_number

from ..cli_types import ensure_writable_dir
from ..qos import BEST_EFFORT, RELIABLE, qos_profile
from ..ros_time import header_ns, stamp_ns
from ..topics import (
    FUSED_TOPIC,
    LABEL_TOPIC,
    NAME_TOPIC,
    OVERLAY_TOPIC,
    SEMANTIC_TOPIC,
    is_compressed_topic,
)

PRED_TOPIC = SEMANTIC_TOPIC  # the node's mask is the prediction scored against the labels
LATENCY_DEFINITION = (
    "mask arrival minus arrival of the label with the same stamp (published with the RGB "
    "frame by the player), both measured in the evaluator process"
)

BOX_LATENCY_DEFINITION = (
    "mask arrival minus arrival of the sample name with the same stamp (published with the "
    "RGB frame by the player), both measured in the evaluator process"
)


def latency_summary(latencies_ms: list[float], definition: str) -> dict[str, Any]:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    out: dict[str, Any] = dict.fromkeys(("p50", "p99", "mean", "max"))
    if lat.size:
        out.update(
            p50=json_number(float(np.percentile(lat, 50))),
            p99=json_number(float(np.percentile(lat, 99))),
            mean=json_number(float(lat.mean())),
            max=json_number(float(lat.max())),
        )
    return {**out, "definition": definition}


@dataclass
class _Pending:
    arrival: float
    pixels: np.ndarray


@dataclass
class StreamScorer:
    """Pairs labels and predictions by stamp and scores each pair once; no ROS in here."""

    class_table: ClassTable
    max_pending: int = 256  # frames waiting for their partner; older ones are given up
    scores: SplitScores = field(init=False)
    labels: dict[int, _Pending] = field(default_factory=dict)
    predictions: dict[int, _Pending] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    unsplit: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    matched: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    label_count: int = 0
    prediction_count: int = 0
    evicted_labels: int = 0
    evicted_predictions: int = 0
    shape_mismatches: list[str] = field(default_factory=list)
    mask_arrivals: list[float] = field(default_factory=list)  # of scored masks
    prediction_arrivals: list[float] = field(default_factory=list)  # of every mask

    def __post_init__(self) -> None:
        self.scores = SplitScores(self.class_table)

    def add_label(self, stamp: int, pixels: np.ndarray, arrival: float) -> None:
        self.label_count += 1
        if stamp in self.predictions:
            pred = self.predictions.pop(stamp)
            self._score(
                stamp, pred.pixels, pixels, label_arrival=arrival, pred_arrival=pred.arrival
            )
            return
        self.labels[stamp] = _Pending(arrival, pixels)
        while len(self.labels) > self.max_pending:
            del self.labels[min(self.labels)]
            self.evicted_labels += 1

    def add_prediction(self, stamp: int, pixels: np.ndarray, arrival: float) -> None:
        self.prediction_count += 1
        self.prediction_arrivals.append(arrival)
        if stamp in self.labels:
            label = self.labels.pop(stamp)
            self._score(
                stamp, pixels, label.pixels, label_arrival=label.arrival, pred_arrival=arrival
            )
        else:
            self.predictions[stamp] = _Pending(arrival, pixels)
            while len(self.predictions) > self.max_pending:
                del self.predictions[min(self.predictions)]
                self.evicted_predictions += 1

    def add_name(self, stamp: int, name: str) -> None:
        self.names[stamp] = name
        if stamp in self.unsplit:
            pred, label = self.unsplit.pop(stamp)
            self.scores.add_condition(name, pred, label)

    def _score(
        self,
        stamp: int,
        pred: np.ndarray,
        label: np.ndarray,
        label_arrival: float,
        pred_arrival: float,
    ) -> None:
        if pred.shape != label.shape:
            self.shape_mismatches.append(f"stamp {stamp}: mask {pred.shape} vs label {label.shape}")
            return
        self.scores.add_overall(pred, label)
        name = self.names.get(stamp)
        if name is None:
            self.unsplit[stamp] = (pred, label)  # the name may still be on its way
        else:
            self.scores.add_condition(name, pred, label)
        latency_ms = (pred_arrival - label_arrival) * 1e3
        self.latencies_ms.append(latency_ms)
        self.matched.append({"stamp_ns": stamp, "latency_ms": round(latency_ms, 3)})
        self.mask_arrivals.append(pred_arrival)

    def report(self, stop_reason: str, topics: dict[str, str]) -> dict[str, Any]:
        for entry in self.matched:
            entry["name"] = self.names.get(entry["stamp_ns"])
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        matched = len(self.matched)
        # output rate: scored masks per second between the first and the last of them
        span = max(self.mask_arrivals) - min(self.mask_arrivals) if matched > 1 else 0.0
        masks = len(self.prediction_arrivals)  # labelled or not: the rate of a label-less drive
        mask_span = self.prediction_arrivals[-1] - self.prediction_arrivals[0] if masks > 1 else 0
        report: dict[str, Any] = {
            "class_table": self.class_table.name,
            "protocol": self.class_table.protocol,
            "topics": topics,
            "stop_reason": stop_reason,
            "frames": {
                "labels": self.label_count,
                "predictions": self.prediction_count,
                "matched": matched,
                "dropped": len(self.labels) + self.evicted_labels,
                "unmatched_predictions": len(self.predictions) + self.evicted_predictions,
                "shape_mismatches": len(self.shape_mismatches),
                "named": sum(1 for e in self.matched if e["name"] is not None),
            },
            **self.scores.summaries(),  # overall, and day / night for MFNet-style names
            "latency_ms": {
                "p50": json_number(float(np.percentile(lat, 50))) if lat.size else None,
                "p99": json_number(float(np.percentile(lat, 99))) if lat.size else None,
                "mean": json_number(float(lat.mean())) if lat.size else None,
                "max": json_number(float(lat.max())) if lat.size else None,
                "definition": LATENCY_DEFINITION,
            },
            "rate_pairs_per_s": (matched - 1) / span if span > 0 else None,
            "rate_masks_per_s": (masks - 1) / mask_span if mask_span > 0 else None,
            "confusion_matrix": self.scores.matrix().matrix.tolist(),
            "matched": self.matched,
            "dropped_stamps": sorted(self.labels),
            "unmatched_prediction_stamps": sorted(self.predictions),
            "shape_mismatch_details": self.shape_mismatches,
        }
        return report


@dataclass
class BoxStreamScorer:
    """Pairs masks with sample names by stamp and scores them against the boxes of that
    name (``BoxScores``); no ROS in here. A name unknown to ``labels`` is a frame without
    objects (no box file in any label set), scored and counted."""

    labels: BoxLabels
    max_pending: int = 256
    scores: BoxScores = field(init=False)
    masks: dict[int, _Pending] = field(default_factory=dict)  # waiting for their name
    names: dict[int, tuple[str, float]] = field(default_factory=dict)  # waiting for a mask
    matched: list[dict[str, Any]] = field(default_factory=list)
    without_file: list[str] = field(default_factory=list)
    name_count: int = 0
    evicted_names: int = 0
    evicted_masks: int = 0

    def __post_init__(self) -> None:
        self.scores = BoxScores(self.labels.class_table, self.labels.classes)

    def add_prediction(self, stamp: int, pixels: np.ndarray, arrival: float) -> None:
        if stamp in self.names:
            name, name_arrival = self.names.pop(stamp)
            self._score(stamp, name, pixels, name_arrival, arrival)
            return
        self.masks[stamp] = _Pending(arrival, pixels)
        while len(self.masks) > self.max_pending:
            del self.masks[min(self.masks)]
            self.evicted_masks += 1

    def add_name(self, stamp: int, name: str, arrival: float) -> None:
        self.name_count += 1
        if stamp in self.masks:
            mask = self.masks.pop(stamp)
            self._score(stamp, name, mask.pixels, arrival, mask.arrival)
            return
        self.names[stamp] = (name, arrival)
        while len(self.names) > self.max_pending:
            del self.names[min(self.names)]
            self.evicted_names += 1

    def _score(
        self, stamp: int, name: str, mask: np.ndarray, name_arrival: float, mask_arrival: float
    ) -> None:
        if name in self.labels.boxes:
            boxes = self.labels.pixels(name, *mask.shape)
        else:
            boxes = np.zeros((0, 5))
            self.without_file.append(name)
        self.scores.add(name, mask, boxes)
        latency_ms = round((mask_arrival - name_arrival) * 1e3, 3)
        self.matched.append({"stamp_ns": stamp, "name": name, "latency_ms": latency_ms})

    def report(self) -> dict[str, Any]:
        names = {m["name"] for m in self.matched}
        return {
            "definition": "see fusionsam_model/evaluation/box_metrics.py (docs/box_evaluation.md)",
            "label_sets": list(self.labels.label_sets),
            "frames": {
                "names": self.name_count,
                "scored": len(self.matched),
                "dropped": len(self.names) + self.evicted_names,  # a name, never a mask
                "unnamed_masks": len(self.masks) + self.evicted_masks,
            },
            "missing_box_files": {k: len(names & set(v)) for k, v in self.labels.missing.items()},
            "frames_without_box_file": sorted(set(self.without_file)),
            **self.scores.summaries(),
            "matched": self.matched,
        }


def box_summary_lines(boxes: dict[str, Any]) -> list[str]:
    """Frames and per-class F1 (all / day / night) of a box-scored drive."""
    f = boxes["frames"]

    def f1(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        f"frames: {f['scored']} masks scored against boxes of {f['names']} named frames; "
        f"{f['dropped']} dropped (no mask), {f['unnamed_masks']} masks without a name"
    ]
    for split in ("all", *CONDITIONS):
        if split in boxes:
            s = boxes[split]
            cells = ", ".join(f"{c} {f1(v['f1'])}" for c, v in s["classes"].items())
            lines.append(f"box F1 {split} ({s['frames']} frames): {cells}; mean {f1(s['mean_f1'])}")
    return lines


def summary_text(report: dict[str, Any]) -> str:
    """The few lines a person reads: frames, rate, latency, mIoU overall/day/night."""
    lat = report["latency_ms"]
    rate = report.get("rate_pairs_per_s")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}"

    def ms(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0f} ms"

    masks_rate = report.get("rate_masks_per_s")
    if "boxes" in report:  # scored against box labels
        return "\n".join(
            [
                *box_summary_lines(report["boxes"]),
                f"rate: {'n/a' if masks_rate is None else f'{masks_rate:.2f}'} masks/s; latency "
                f"p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])} (mask arrival - name arrival)",
                f"stopped: {report['stop_reason']}",
            ]
        )
    f = report["frames"]
    if f["labels"] == 0 and f["predictions"] > 0:  # a label-less drive (real camera pairs)
        return "\n".join(
            [
                f"frames: {f['predictions']} masks received; the drive has no labels",
                f"rate: {'n/a' if masks_rate is None else f'{masks_rate:.2f}'} masks/s",
                "mIoU: not computed (no labels)",
                f"stopped: {report['stop_reason']}",
            ]
        )
    lines = [
        f"frames: {f['matched']} scored of {f['labels']} labels; {f['dropped']} dropped "
        f"(no mask), {f['unmatched_predictions']} masks without label",
        f"rate: {'n/a' if rate is None else f'{rate:.2f}'} pairs/s scored; latency p50 {ms(lat['p50'])}, "
        f"p99 {ms(lat['p99'])}",
        f"mIoU: {pct(report['overall']['miou'])} overall"
        + "".join(
            f", {c} {pct(report[c]['miou'])} ({report[c]['pairs']} frames)"
            for c in CONDITIONS
            if c in report
        ),
        f"protocol: {report['protocol']}",
        f"stopped: {report['stop_reason']}",
    ]
    return "\n".join(lines)


def _fusion_lines(report: dict[str, Any]) -> list[str]:
    """Mean fused-image metrics, when fused frames were subscribed to."""
    fusion = report.get("fusion_metrics")
    if not fusion:
        return []
    cells = ", ".join(f"{k} {v:.3g}" for k, v in fusion["means"].items())
    return [f"Fused image ({fusion['frames']} frames, {fusion['kind']}): {cells}.", ""]


def box_markdown(report: dict[str, Any]) -> str:
    """The report of a drive scored against boxes: per-class recall / precision / F1."""
    boxes = report["boxes"]
    splits = {s: boxes[s] for s in ("all", *CONDITIONS) if s in boxes}
    missing = ", ".join(f"{k} {v}" for k, v in boxes["missing_box_files"].items())
    return "\n".join(
        [
            "# FusionSAM streaming evaluation against box labels",
            "",
            "```",
            summary_text(report),
            "```",
            "",
            f"Label sets (merged, same class IoU > 0.5 = one object): {', '.join(boxes['label_sets'])}. "
            "Definition: docs/box_evaluation.md.",
            f"Box files missing among the scored frames (= no objects): {missing}; frames with "
            f"no box file in any set: {len(boxes['frames_without_box_file'])}.",
            "",
            "```",
            format_box_table(splits),
            "```",
            "",
            "Topics: " + ", ".join(f"{k} = `{v}`" for k, v in report["topics"].items()),
            "",
            *_fusion_lines(report),
            "![latency](latency.png)",
            "",
        ]
    )


def markdown_report(report: dict[str, Any]) -> str:
    if "boxes" in report:
        return box_markdown(report)
    names = list(report["overall"]["iou"])
    columns = [c for c in SPLITS if c in report]

    def cell(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}"

    rows = [f"| class | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    for n in names:
        rows.append(f"| {n} | " + " | ".join(cell(report[c]["iou"][n]) for c in columns) + " |")
    rows.append(
        "| **mIoU** | " + " | ".join(f"**{cell(report[c]['miou'])}**" for c in columns) + " |"
    )
    rows.append("| frames | " + " | ".join(str(report[c]["pairs"]) for c in columns) + " |")
    f = report["frames"]
    lat = report["latency_ms"]
    return "\n".join(
        [
            "# FusionSAM streaming evaluation",
            "",
            "```",
            summary_text(report),
            "```",
            "",
            f"Protocol: {report['protocol']}. IoU in percent; – = class absent from labels and masks.",
            "",
            *rows,
            "",
            "## Frames",
            "",
            f"- labels received: {f['labels']}, masks received: {f['predictions']}",
            f"- scored (paired by exact stamp): {f['matched']}",
            f"- dropped (label without a mask): {f['dropped']}",
            f"- masks without a label: {f['unmatched_predictions']}",
            f"- shape mismatches (not scored): {f['shape_mismatches']}",
            "",
            "## Latency",
            "",
            "p50 {}, p99 {}, mean {}, max {} (ms).".format(
                *(
                    ("–" if lat[k] is None else f"{lat[k]:.1f}")
                    for k in ("p50", "p99", "mean", "max")
                )
            ),
            f"Definition: {lat['definition']}.",
            "",
            "Topics: " + ", ".join(f"{k} = `{v}`" for k, v in report["topics"].items()),
            "",
            *_fusion_lines(report),
            "![per-class IoU](iou.png)",
            "",
            "![latency](latency.png)",
            "",
        ]
    )


def write_report(report: dict[str, Any], out: Path, overlays: list[tuple[str, np.ndarray]]) -> None:
    from . import report_plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    splits = {c: report[c]["iou"] for c in SPLITS if c in report}
    if "boxes" not in report:  # box-scored drives have no IoU
        report_plots.iou_bars(splits, out / "iou.png", f"per-class IoU — {report['protocol']}")
    report_plots.latency_histogram(
        [m["latency_ms"] for m in report["matched"]],
        out / "latency.png",
        "mask latency (label arrival to mask arrival, same stamp)",
    )
    if overlays:
        for label, image in overlays:
            report_plots.save_rgb_png(image, out / f"overlay_{label}.png")
        strip = report_plots.horizontal_strip([image for _, image in overlays])
        report_plots.save_rgb_png(strip, out / "overlay_strip.png")


class OverlayKeeper:
    """A bounded, uniform sample of the overlay frames (reservoir sampling), to pick a
    strip from at the end. Uniform rather than every k-th frame: a fixed stride aliases
    with periodic drives (e.g. alternating day/night frames) and keeps only one kind."""

    def __init__(self, capacity: int = 32, seed: int = 0) -> None:
        self.capacity = capacity
        self.seen = 0
        self.frames: list[tuple[int, np.ndarray]] = []
        self._rng = np.random.default_rng(seed)

    def add(self, stamp: int, image: np.ndarray) -> None:
        self.seen += 1
        if len(self.frames) < self.capacity:
            self.frames.append((stamp, np.array(image, copy=True)))
            return
        slot = int(self._rng.integers(self.seen))
        if slot < self.capacity:
            self.frames[slot] = (stamp, np.array(image, copy=True))

    def pick(self, count: int, names: dict[int, str]) -> list[tuple[int, np.ndarray]]:
        """``count`` frames spread over the drive; half day, half night when names say so."""
        groups: dict[str | None, list[tuple[int, np.ndarray]]] = {}
        for frame in sorted(self.frames, key=lambda frame: frame[0]):
            groups.setdefault(condition_of(names.get(frame[0], "")), []).append(frame)
        if set(groups) != set(CONDITIONS):
            groups = {None: self.frames}
        picked = []
        for k, frames in enumerate(groups.values()):
            share = count // len(groups) + (1 if k < count % len(groups) else 0)
            if share and frames:
                idx = np.linspace(0, len(frames) - 1, num=min(share, len(frames))).round()
                picked += [frames[int(i)] for i in sorted(set(idx.tolist()))]
        return sorted(picked, key=lambda frame: frame[0])


READY_LINE = "ready: matched the mask publisher on"


def evaluator_qos(reliability: str, depth: int = 100) -> Any:
    """Reliable by default: a replayed bag (reliable, as recorded) and the node's mask
    publishers (reliable) then lose nothing in transport, so every frame the node drops
    is a real drop. ``best_effort`` is for best-effort publishers, which a reliable
    reader cannot match."""
    return qos_profile(reliability, depth)


class StreamEvaluator:
    """The rclpy side: subscriptions feeding a StreamScorer and an OverlayKeeper."""

    def __init__(
        self,
        node: Any,
        class_table: ClassTable,
        labels_topic: str = LABEL_TOPIC,
        pred_topic: str = PRED_TOPIC,
        names_topic: str = NAME_TOPIC,
        overlay_topic: str | None = None,
        qos: str = "reliable",
        fused_topic: str | None = None,
        fused_keep: int = 32,
        box_labels: BoxLabels | None = None,
    ) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Header

        def image_type(topic: str) -> type:  # image_transport's naming: <base>/compressed
            return CompressedImage if is_compressed_topic(topic) else Image

        self.node = node
        self.scorer = StreamScorer(class_table)
        self.box_scorer = BoxStreamScorer(box_labels) if box_labels is not None else None
        self.overlays = OverlayKeeper()
        self.fused = OverlayKeeper(capacity=max(1, fused_keep))  # --fused N keeps up to N
        self.fusion_meter = FusionMeter()  # fused-image-only metrics of every fused frame seen
        self.last_message = None  # monotonic time of the newest message on any topic
        self.topics = {"labels": labels_topic, "predictions": pred_topic, "names": names_topic}
        profile = evaluator_qos(qos)
        subscriptions = [
            (image_type(pred_topic), pred_topic, self._on_prediction),
            (Header, names_topic, self._on_name),
        ]
        if labels_topic:  # None: a drive without labels
            subscriptions.append((image_type(labels_topic), labels_topic, self._on_label))
        else:
            del self.topics["labels"]
        if overlay_topic:
            self.topics["overlay"] = overlay_topic
            subscriptions.append((image_type(overlay_topic), overlay_topic, self._on_overlay))
        if fused_topic:
            self.topics["fused"] = fused_topic
            subscriptions.append((image_type(fused_topic), fused_topic, self._on_fused))
        self.mask_publishers = 0  # DDS-matched publishers on the mask topic
        self._subs = [
            node.create_subscription(
                msg_type,
                topic,
                callback,
                profile,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=lambda _info, topic=topic: self._incompatible(topic, qos),
                    matched=self._on_mask_matched if topic == pred_topic else None,
                ),
            )
            for msg_type, topic, callback in subscriptions
        ]

    def _on_mask_matched(self, info: Any) -> None:
        """A node's mask publisher is matched (DDS, not just the graph): masks published
        from now on reach us, so a player may start. Printed for scripts to wait on."""
        first = self.mask_publishers == 0 and info.current_count > 0
        self.mask_publishers = info.current_count
        if first:
            print(f"{READY_LINE} {self.topics['predictions']}", flush=True)

    def _incompatible(self, topic: str, qos: str) -> None:
        other = "best_effort" if qos == "reliable" else "reliable"
        self.node.get_logger().error(
            f"a publisher on {topic} has QoS incompatible with this {qos} subscription; "
            f"run fusionsam-evaluate with --qos {other}"
        )

    def _mono8(self, msg: Any, what: str) -> np.ndarray:
        """Raw mono8 or a PNG CompressedImage (lossless, so ids survive)."""
        from ..node.compressed_image import mono8_from_message

        return mono8_from_message(msg, what)

    def _on_label(self, msg: Any) -> None:
        now = self._touch()
        try:
            pixels = self._mono8(msg, "label")
        except ValueError as exc:
            self.node.get_logger().error(f"{self.topics['labels']}: {exc}")
            return
        self.scorer.add_label(stamp_ns(msg), pixels, now)

    def _on_prediction(self, msg: Any) -> None:
        now = self._touch()
        try:
            pixels = self._mono8(msg, "mask")
        except ValueError as exc:
            self.node.get_logger().error(f"{self.topics['predictions']}: {exc}")
            return
        self.scorer.add_prediction(stamp_ns(msg), pixels, now)
        if self.box_scorer is not None:
            self.box_scorer.add_prediction(stamp_ns(msg), pixels, now)

    def _on_name(self, msg: Any) -> None:
        now = self._touch()
        self.scorer.add_name(header_ns(msg), msg.frame_id)
        if self.box_scorer is not None:
            self.box_scorer.add_name(header_ns(msg), msg.frame_id, now)

    def scored_frames(self) -> int:
        """Frames that count towards ``--count``: scored against labels or boxes, or
        masks received on a drive without either."""
        if self.box_scorer is not None:
            return len(self.box_scorer.matched)
        if "labels" in self.topics:
            return len(self.scorer.matched)
        return self.scorer.prediction_count

    def _on_overlay(self, msg: Any) -> None:
        from ..node.compressed_image import rgb_from_message as rgb_from_image

        self._touch()
        try:
            self.overlays.add(stamp_ns(msg), rgb_from_image(msg))
        except ValueError as exc:
            self.node.get_logger().warning(f"overlay: {exc}")

    def _on_fused(self, msg: Any) -> None:
        from ..node.compressed_image import rgb_from_message as rgb_from_image

        self._touch()
        try:
            image = rgb_from_image(msg)
        except ValueError as exc:
            self.node.get_logger().warning(f"fused image: {exc}")
            return
        self.fused.add(stamp_ns(msg), image)
        self.fusion_meter.update(compute_no_reference(image))

    def _touch(self) -> float:
        self.last_message = time.monotonic()
        return self.last_message

    def run(self, count: int | None, idle_timeout_s: float, startup_timeout_s: float) -> str:
        """Spin until ``count`` frames are scored, or the streams go quiet; returns why."""
        import rclpy

        started = time.monotonic()
        while rclpy.ok():
            rclpy.spin_once(self.node, timeout_sec=0.05)
            now = time.monotonic()
            labelled = "labels" in self.topics or self.box_scorer is not None
            if count is not None and self.scored_frames() >= count:
                self._drain_images()
                return f"count reached: {count} frames {'scored' if labelled else 'masked'}"
            if self.last_message is None:
                if now - started > startup_timeout_s:
                    return f"nothing arrived within {startup_timeout_s:g} s (is the bag playing?)"
            elif now - self.last_message > idle_timeout_s:
                return f"no message for {idle_timeout_s:g} s: the bag ended"
        return "interrupted"

    def _drain_images(self, timeout_s: float = 2.0) -> None:
        """The node publishes the mask first: let the last frame's overlay and fused image
        (when subscribed) arrive before stopping."""
        import rclpy

        keepers = [
            k for k, t in ((self.overlays, "overlay"), (self.fused, "fused")) if t in self.topics
        ]
        deadline = time.monotonic() + timeout_s
        while rclpy.ok() and time.monotonic() < deadline:
            if all(k.seen >= self.scorer.prediction_count for k in keepers):
                return
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def finish(
        self, stop_reason: str, out: Path, overlays: int = 0, fused: int = 0
    ) -> dict[str, Any]:
        report = self.scorer.report(stop_reason, self.topics)
        if self.box_scorer is not None:
            report["boxes"] = self.box_scorer.report()
            report["latency_ms"] = latency_summary(
                [m["latency_ms"] for m in self.box_scorer.matched], BOX_LATENCY_DEFINITION
            )
            report["matched"] = self.box_scorer.matched
        if self.scorer.prediction_count == 0 and self.scorer.label_count > 0:
            report["stop_reason"] += (
                f"; no mask arrived on {self.topics['predictions']} (is the node running?)"
            )
        if self.fusion_meter.count:
            report["fusion_metrics"] = {
                "frames": self.fusion_meter.count,
                "kind": "fused image only (no source image needed), VIFB definitions",
                "means": self.fusion_meter.means(),
            }
        named = [
            (self.scorer.names.get(stamp) or str(stamp), image)
            for stamp, image in self.overlays.pick(overlays, self.scorer.names)
        ]
        write_report(report, out, named)
        if fused:
            from . import report_plots

            kept = self.fused.pick(fused, self.scorer.names)
            for stamp, image in kept:
                name = self.scorer.names.get(stamp) or str(stamp)
                report_plots.save_rgb_png(image, out / f"fused_{name}.png")
        return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionsam-evaluate",
        description="Score a running FusionSAM node against the label topic of a replayed bag.",
    )
    parser.add_argument("--labels", default=LABEL_TOPIC, help="label topic (mono8 class ids)")
    parser.add_argument("--pred", default=PRED_TOPIC, help="the node's mask topic")
    parser.add_argument("--names", default=NAME_TOPIC, help="sample-name topic (std_msgs/Header)")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--count", type=int, default=None, help="stop after N scored frames")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="stop after S s without messages"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, help="give up if nothing arrives in S s"
    )
    parser.add_argument("--class-table", default="mfnet", help="mfnet or fmb")
    parser.add_argument("--overlay-topic", default=OVERLAY_TOPIC)
    parser.add_argument("--overlays", type=int, default=0, help="save N overlay frames and a strip")
    parser.add_argument(
        "--no-labels",
        action="store_true",
        help="the drive has no labels (real camera pairs): report the mask rate, score nothing; "
        "--count then counts masks",
    )
    parser.add_argument(
        "--boxes",
        nargs="+",
        default=None,
        metavar="DIR",
        help="score the masks against box labels (YOLO folders or COCO json, merged) of the "
        "sample names on --names, instead of a label topic",
    )
    parser.add_argument(
        "--box-map",
        default=MSRS_BOX_MAP,
        help=f"box class = class-table class, comma-separated (default {MSRS_BOX_MAP})",
    )
    parser.add_argument("--fused-topic", default=FUSED_TOPIC)
    parser.add_argument(
        "--fused",
        type=int,
        default=0,
        help="keep N fused frames (a uniform sample) as fused_NAME.png",
    )
    parser.add_argument(
        "--qos",
        choices=(RELIABLE, BEST_EFFORT),
        default=RELIABLE,
        help="subscription reliability (best_effort for best-effort publishers)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    full_argv = sys.argv if argv is None else ["fusionsam-evaluate", *argv]
    args = build_parser().parse_args(remove_ros_args(full_argv)[1:])
    try:
        class_table = get_class_table(args.class_table)
    except ValueError as exc:
        print(f"fusionsam-evaluate: error: --class-table: {exc}", file=sys.stderr)
        return 2
    if args.count is not None and args.count <= 0:
        print(f"fusionsam-evaluate: error: --count must be > 0, got {args.count}", file=sys.stderr)
        return 2
    box_labels = None
    if args.boxes:
        from fusionsam_model.data.datasets import DatasetError

        try:  # every box file is checked now: a malformed line stops here, named
            box_labels = load_streamed_box_labels(args.boxes, args.box_map, class_table)
        except (DatasetError, ValueError) as exc:
            print(f"fusionsam-evaluate: error: --boxes: {exc}", file=sys.stderr)
            return 2
    try:  # the report is written at the end: find out now that it can be
        ensure_writable_dir(args.out)
    except OSError as exc:
        print(
            f"fusionsam-evaluate: error: --out {args.out}: cannot write there: {exc}",
            file=sys.stderr,
        )
        return 2
    rclpy.init(args=full_argv)
    node = rclpy.create_node("fusionsam_evaluator")
    evaluator = StreamEvaluator(
        node,
        class_table,
        labels_topic=None if args.no_labels or args.boxes else args.labels,
        pred_topic=args.pred,
        names_topic=args.names,
        overlay_topic=args.overlay_topic if args.overlays > 0 else None,
        qos=args.qos,
        fused_topic=args.fused_topic if args.fused > 0 else None,
        fused_keep=args.fused,
        box_labels=box_labels,
    )
    against = "no labels (rate only)" if args.no_labels else args.labels
    if box_labels is not None:
        against = f"box labels {', '.join(box_labels.label_sets)} by name on {args.names}"
    print(f"evaluating {args.pred} against {against} ({class_table.name}); waiting for frames")
    from rclpy.executors import ExternalShutdownException

    try:
        reason = evaluator.run(args.count, args.timeout, args.startup_timeout)
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C: still write the report
        reason = "interrupted"
    report = evaluator.finish(reason, Path(args.out), overlays=args.overlays, fused=args.fused)
    node.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()
    print(summary_text(report))
    print(f"wrote {Path(args.out) / 'report.json'}, report.md and plots")
    if box_labels is not None:
        return 0 if report["boxes"]["frames"]["scored"] > 0 else 1
    if args.no_labels:
        return 0 if report["frames"]["predictions"] > 0 else 1
    return 0 if report["frames"]["matched"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
