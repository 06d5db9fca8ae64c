"""``fusionsam-export``: the command line around ``fusionsam_model.deploy.export``.

Kept apart from the library because ``--verify`` runs the export with the onnxruntime
backend (a reader of the format), and the writer must not import its readers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from fusionsam_model.deploy.export import (
    DEFAULT_OPSET,
    cached_export,
    export_model,
    load_source,
    model_at_input_size,
    model_fingerprint,
)
from fusionsam_model.deploy.export_format import ExportError, read_manifest
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from fusionsam_model.runtime.checkpoint import CheckpointError


def compare_with_torch(model: FusionSAM, export_dir: Path, seed: int = 1) -> dict[str, float]:
    """Max abs differences between onnxruntime (CPU) and the torch model on fresh random inputs."""
    backend = OnnxRuntimeBackend(export_dir, device="cpu")
    s = backend.input_size
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.rand(backend.batch_size, 3, s, s, generator=gen)
    thermal = torch.rand(backend.batch_size, 1, s, s, generator=gen)
    ref_model = model_at_input_size(model, s).float().eval()
    with torch.inference_mode():
        front = ref_model.forward_front(rgb, thermal)
        embedding = ref_model.encode_image(front.fused)
        logits, presence = ref_model.decode(embedding, front.mask_logits, front.fine)
    out = backend.infer(rgb, thermal)
    return {
        "fused": (out.fused - front.fused).abs().max().item(),
        "mask_logits": (out.mask_logits - front.mask_logits).abs().max().item(),
        "class_logits": (out.class_logits - logits).abs().max().item(),
        "presence": (out.presence - presence).abs().max().item(),
        "class_id_agreement": (out.class_logits.argmax(1) == logits.argmax(1))
        .float()
        .mean()
        .item(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fusionsam-export",
        description="Export a FusionSAM checkpoint to three static-shape ONNX graphs + manifest.json.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="project checkpoint (.pt) or preset:NAME for random weights (e.g. preset:tiny)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="output directory")
    where.add_argument(
        "--cache",
        action="store_true",
        help="into the export cache ($FUSIONSAM_CACHE_DIR, default ~/.cache/fusionsam), where "
        "the node's and Segmenter's backend=auto find it and run onnxruntime on a CPU",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="input size S (default: the model's)"
    )
    parser.add_argument("--fp16", action="store_true", help="export fp16 weights and I/O")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--batch", type=int, default=1, help="static batch size of the graphs")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare onnxruntime (CPU) with PyTorch on random inputs (fp32 only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript"):  # one INFO line per rewritten constant
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.size is not None and (args.size <= 0 or args.size % 16):
        parser.error(f"--size must be a positive multiple of 16, got {args.size}")

    try:
        model, table, source = load_source(args.checkpoint, args.size)
        start = time.perf_counter()
        if args.cache:
            if args.batch != 1:
                raise ValueError("--cache keeps batch-1 graphs (what the node runs)")
            args.out = cached_export(
                model,
                model_fingerprint(model),
                table,
                args.size,
                args.fp16,
                args.opset,
                source=source,
            )
            manifest = read_manifest(args.out)
        else:
            manifest = export_model(
                model, args.out, table, args.size, args.fp16, args.opset, args.batch, source
            )
        total = time.perf_counter() - start
    except (CheckpointError, ExportError, ValueError) as exc:
        print(f"fusionsam-export: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"exported S={manifest['input_size']} {manifest['precision']} opset {args.opset} "
        f"to {args.out} in {total:.1f} s"
    )
    for g in manifest["graphs"].values():
        print(f"  {g['file']:<20} {g['bytes'] / 1e6:9.2f} MB  sha256 {g['sha256'][:16]}")
    if args.verify:
        if args.fp16:
            print("  --verify skipped: fp16 graphs need a GPU runtime to compare meaningfully")
        else:
            diffs = compare_with_torch(model, args.out)
            print("  onnxruntime vs torch: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
