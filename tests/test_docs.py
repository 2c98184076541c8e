"""The README is the short entry point; each longer text exists once, under docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_links_resolve_and_every_doc_is_linked() -> None:
    text = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(([^)#]+)\)", text))
    assert links, "the README links the longer docs"
    for link in links:
        assert (ROOT / link).is_file(), f"README links {link}, which does not exist"
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs <= links, f"docs nobody can find from the README: {sorted(docs - links)}"


def test_no_second_copy_of_a_doc() -> None:
    """Copies drift: each text has one file."""
    copies = [str(p.relative_to(ROOT)) for p in ROOT.glob("*/README-section.md")]
    assert copies == []


def test_readme_checks_configs_with_the_cli() -> None:
    """`check-config` answers in one line; a `python -c` one-liner answers with a traceback."""
    text = (ROOT / "README.md").read_text()
    assert "check-config" in text and "python -c" not in text
