"""Every design citation in the code resolves inside the repository.

Comments and messages cite ``docs/vr.md §N.N`` and ``docs/vr.md bug #N``; a section that
was renumbered or a catalog entry that was dropped would leave them pointing at nothing.
The planted bugs name their catalog entry, and the entry names the planted bug back.
"""

from __future__ import annotations

import re
from pathlib import Path

from vr.bugs import BUGS

ROOT = Path(__file__).resolve().parent.parent
VR_DOC = ROOT / "docs" / "vr.md"
SOURCES = [
    p
    for folder in (
        "vr",
        "harness",
        "clusters",
        "nemeses",
        "workloads",
        "checkers",
        "reports",
        "tests",
        "docs",
    )
    for p in (ROOT / folder).rglob("*")
    if p.suffix in (".py", ".md") and p.is_file()
] + [ROOT / "README.md"]


def _sections() -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", VR_DOC.read_text(encoding="utf-8"), re.MULTILINE))


def _catalog() -> dict[int, str]:
    text = VR_DOC.read_text(encoding="utf-8")
    catalog = text[text.index("## 4. Bug catalog") : text.index("## 5.")]
    entries = re.split(r"^\s*(\d+)\. ", catalog, flags=re.MULTILINE)[1:]
    return {int(number): body for number, body in zip(entries[::2], entries[1::2], strict=True)}


def test_the_catalog_is_numbered_1_to_20() -> None:
    assert sorted(_catalog()) == list(range(1, 21))


def test_every_cited_section_and_bug_exists() -> None:
    sections, catalog = _sections(), _catalog()
    cited = 0
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"docs/vr\.md[\s,]+(?:§(\d+(?:\.\d+)?)|bug #(\d+))", text):
            cited += 1
            section, bug = match.groups()
            where = f"{path.relative_to(ROOT)}: {match.group(0)!r}"
            assert section is None or section in sections, f"{where}: no such section in docs/vr.md"
            assert bug is None or int(bug) in catalog, f"{where}: no such catalog entry"
    assert cited >= 30, f"only {cited} citations of docs/vr.md found"


def test_every_planted_bug_names_its_catalog_entry_and_back() -> None:
    """An entry names the bug that plants it; a bug outside the catalog (0) is described in §4 too."""
    catalog = _catalog()
    text = VR_DOC.read_text(encoding="utf-8")
    section = text[text.index("## 4. Bug catalog") : text.index("## 5.")]
    for bug in BUGS.values():
        entry = section if bug.catalog == 0 else catalog[bug.catalog]
        assert f"`{bug.name}`" in entry, f"docs/vr.md §4 (entry {bug.catalog}) does not name {bug.name}"
