"""training.tables: the paper's table layouts from run folders, and the recipe end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training import tables


def _fake_row(out: Path, key: str, diag: int, seed: int = 0) -> None:
    """A finished row as train_and_evaluate writes it (a test-split confusion matrix)."""
    m = np.full((9, 9), 5) + np.diag(np.full(9, diag))
    names = [
        "unlabeled",
        "car",
        "person",
        "bike",
        "curve",
        "car_stop",
        "guardrail",
        "color_cone",
        "bump",
    ]
    entry = {
        "key": key,
        "seed": seed,
        "label": key,
        "overrides": [],
        "train_s": 12.0,
        "report": {
            "history": [
                {"stage": "seg", "epoch": 1, "perplexity_rgb": 40.0, "perplexity_thermal": 30.0}
            ]
        },
        "test": {
            "confusion_matrix": m.tolist(),
            "class_names": names,
            "overall": {"miou": 0.5},
            "day": {"miou": 0.6},
            "night": {"miou": 0.4},
        },
    }
    folder = tables.seed_dir(out, seed) / key
    folder.mkdir(parents=True)
    (folder / "row.json").write_text(json.dumps(entry))


def test_render_measured_quoted_and_missing_rows(tmp_path: Path) -> None:
    _fake_row(tmp_path, "full", 95)
    _fake_row(tmp_path, "no_lstg", 45)
    text = tables.render(tmp_path, "cpu")
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "LSTG study"):
        assert f"#### {title}" in text
    # every table names its protocol and split under it
    assert text.count("Protocol") >= 5 and text.count("**test**") >= 4
    assert "| MRFS24 | quoted | 98.6 |" in text  # Table 1 peer, Unlabeled column first
    assert "| MRFS24 | quoted | 76.2 |" in text  # Table 3 peer
    m = np.full((9, 9), 5) + np.diag(np.full(9, 95))
    iou = 100 * np.diag(m) / (m.sum(0) + m.sum(1) - np.diag(m))
    assert f"| FusionSAM tiny, synthetic | measured | {iou[0]:.1f} |" in text
    assert "(B) concat, no fusion-mask hint (paper) | not run" in text
    assert "fmb15" in text and "fmb14" in text


def test_seeds_are_averaged_with_their_spread(tmp_path: Path) -> None:
    for seed, diag in ((0, 95), (1, 45), (2, 20)):
        _fake_row(tmp_path, "full", diag, seed)
    _fake_row(tmp_path, "no_lstg", 45)  # one seed only: no spread shown
    text = tables.render(tmp_path, "cpu")
    mious = []
    for diag in (95, 45, 20):
        m = np.full((9, 9), 5) + np.diag(np.full(9, diag))
        mious.append(100 * np.mean(np.diag(m) / (m.sum(0) + m.sum(1) - np.diag(m))))
    mean, sd = np.mean(mious), np.std(mious, ddof=1)
    assert f"| (C) FusionSAM (ours, tiny) | {mean:.1f} ± {sd:.1f} |" in text
    assert f"| (A) without LSTG (conv stem) | {mious[1]:.1f} |" in text
    assert "mean over 3 training seeds" in text.lower()
    png = tables.plot_lstg(tmp_path, "cpu", tmp_path / "study.png")
    assert png.stat().st_size > 0


def test_rows_keep_paper_b_apart_from_ours_and_inputs_explicit(tmp_path: Path) -> None:
    rows = {r.key: r for r in tables.rows(tables.SIZES["cpu"], tmp_path)}
    assert "model.mask_prompt=false" in rows["concat_no_hint"].overrides
    assert "model.mask_prompt=false" not in rows["concat"].overrides
    for key, inp in (
        ("sam_pixel", "pixel_fusion"),
        ("sam_fused", "fused"),
        ("sam2_fused", "fused"),
    ):
        assert f"model.baseline_input={inp}" in rows[key].overrides
    assert "model.image_encoder=sam2_hiera_t" in rows["sam2_fused"].overrides
    size = tables.SIZES["cpu"]
    total = size.lstg_epochs + size.seg_epochs
    assert f"seg.epochs={total}" in rows["lstg_s1_0"].overrides  # equal total epochs


def test_quick_recipe_end_to_end(tmp_path: Path) -> None:
    """generator -> stage 1 -> row C -> test evaluation -> tables.md (quick size)."""
    tables.run_all("quick", tmp_path, jobs=1, device="cpu", only=["full"])
    entry = json.loads((tmp_path / "full" / "row.json").read_text())
    assert entry["test"]["class_table"] == "mfnet" and entry["test"]["overall"]["pairs"] == 6
    assert (tmp_path / "stage1" / "last.pt").is_file()
    text = (tmp_path / "tables.md").read_text()
    assert "| FusionSAM tiny, synthetic | measured |" in text


def test_results_doc_holds_the_block_the_generator_writes(tmp_path: Path) -> None:
    """`--doc` (default docs/results.md; `--readme` is the old name) replaces only the block."""
    root = Path(__file__).resolve().parent.parent
    results = (root / tables.DEFAULT_DOC).read_text()
    assert tables.DOC_BEGIN in results and tables.DOC_END in results
    parser = tables.build_parser()
    assert parser.parse_args(["render", "--doc"]).doc == tables.DEFAULT_DOC
    assert parser.parse_args(["render", "--readme", "x.md"]).doc == "x.md"
    assert parser.parse_args(["render"]).doc is None
    doc = tmp_path / "results.md"
    doc.write_text(f"head\n{tables.DOC_BEGIN}\nold\n{tables.DOC_END}\ntail\n")
    tables.write_into_doc(doc, "#### new table\n")
    assert doc.read_text() == f"head\n{tables.DOC_BEGIN}\n#### new table\n{tables.DOC_END}\ntail\n"
