"""Every relative link in README.md and docs/*.md points to a file that exists (and, for a
`file.md#anchor` link, to a heading that exists in that file). Web links are not fetched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code (links there are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _anchors(md: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to '-', '-N' repeats."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in FENCE.sub("", md.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(md: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(md.read_text())) if not re.match(r"(https?|mailto):", t)]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md: Path) -> None:
    broken = []
    for target in _links(md):
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT)})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{md.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_checker_sees_links_and_skips_code(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "# A title: `code` (here)\n[a](b.md#c) ![i](img.png) [w](https://x.org)\n"
        "`[not](a-link.md)`\n```\n[nor](this.md)\n```\n"
    )
    assert _links(md) == ["b.md#c", "img.png"]
    assert _anchors(md) == {"a-title-code-here"}
