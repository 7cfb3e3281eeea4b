"""The documents in docs/ are there, and what the code and README cite from them exists.

Docstrings, comments, schemas and --help texts cite the CAPI contract by section
(``docs/capi.md §3.6``) and the design by name (``design.md, "Commit rule"``); a citation of a
section that is not there sends a reader nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _cited_in() -> list[Path]:
    """Every file of the project that may cite the documents."""
    files = [ROOT / "README.md", ROOT / "capi-stream.example.toml", ROOT / "docker-compose.yml"]
    for folder, pattern in (
        ("stream", "*.py"),
        ("tests", "*.py"),
        ("bench", "*.py"),
        ("schemas", "*.avsc"),
        ("docs", "*.md"),
    ):
        files.extend(sorted((ROOT / folder).rglob(pattern)))
    return [f for f in files if f.exists()]


def _headings(doc: Path) -> set[str]:
    """Section numbers a document has: ``## 3. …`` → "3", ``### 3.6 …`` → "3.6".

    A numbered list directly in a ``## N.`` section counts as its subsections: item 4 of §8's
    list is cited as §8.4.
    """
    found: set[str] = set()
    chapter = None
    for line in doc.read_text().splitlines():
        heading = re.match(r"^(#{2,4}) (\d+(?:\.\d+)*)\.?\s", line)
        if heading:
            found.add(heading.group(2))
            chapter = heading.group(2) if len(heading.group(1)) == 2 else None
        elif line.startswith("#"):
            chapter = None
        elif chapter and (item := re.match(r"^(\d+)\. ", line)):
            found.add(f"{chapter}.{item.group(1)}")
    return found


def _capi_citations() -> list[tuple[str, str]]:
    """(file, section) for every ``capi.md §N`` citation, ``§1.5, §2 and §3`` lists included."""
    found = []
    for path in _cited_in():
        text = path.read_text()
        for match in re.finditer(
            r"capi\.md((?:(?:,\s*|\s+and\s+|\s+)§\d+(?:\.\d+)*)+)", text, re.I
        ):
            for section in re.findall(r"§(\d+(?:\.\d+)*)", match.group(1)):
                found.append((str(path.relative_to(ROOT)), section))
    return found


def test_every_cited_capi_section_exists() -> None:
    """Each ``capi.md §N.M`` cited anywhere in the project is a heading of docs/capi.md."""
    citations = _capi_citations()
    assert len(citations) > 20  # the code cites the contract throughout
    sections = _headings(DOCS / "capi.md")
    missing = sorted(
        {f"{where}: §{section}" for where, section in citations}
        - {f"{where}: §{section}" for where, section in citations if section in sections}
    )
    assert missing == []


def test_capi_keeps_the_section_numbers_the_code_cites() -> None:
    """The numbering is the contract's: §1.5 is batching, §3.6 the baseline, §7 deduplication."""
    text = (DOCS / "capi.md").read_text()
    assert re.search(r"^### 1\.5 Batch size", text, re.M)
    assert re.search(r"^### 3\.6 Matching baseline", text, re.M)
    assert re.search(r"^### 3\.8 Worked examples and test vectors", text, re.M)
    assert re.search(r"^### 5\.2 Error envelope", text, re.M)
    assert re.search(r"^## 7\. Deduplication", text, re.M)


def test_every_cited_design_section_exists() -> None:
    """A quoted name after ``design.md`` ("Commit rule") and its failure table are in design.md."""
    design = (DOCS / "design.md").read_text()
    names = set()
    tables = 0
    for path in _cited_in():
        text = path.read_text()
        names.update(re.findall(r"design\.md(?:'s)?,?\s+\"([^\"]+)\"", text, re.I))
        tables += len(re.findall(r"design\.md(?:'s)? failure table", text, re.I))
    assert names, "the code cites the design by section name"
    for name in names:
        assert name in design, name
    if tables:
        assert "| what came back | class | what happens |" in design


def test_links_between_documents_resolve() -> None:
    """Every relative Markdown link in docs/ points at a file of the repository."""
    broken = []
    for doc in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.name} -> {target}")
    assert broken == []


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_documents_speak_of_the_project_only(doc: str) -> None:
    """No paths outside the repository and no tracker or work-process talk in the documents."""
    text = (DOCS / doc).read_text()
    for pattern in (r"\.\./shared", r"\bissue \d+", r"\bthe lead\b", r"\bthis session\b"):
        assert not re.search(pattern, text, re.I), pattern


def test_settings_named_in_the_documents_exist() -> None:
    """``deliverer.revoke_timeout_s`` and the like, written in docs/, are real settings."""
    from stream.config import Settings

    unknown = []
    for doc in DOCS.glob("*.md"):
        text = doc.read_text()
        for section, name in re.findall(
            r"`(deliverer|normalizer|topics|observability)\.([a-z_]+)", text
        ):
            model = Settings.model_fields[section].annotation
            if name not in model.model_fields:  # type: ignore[union-attr]
                unknown.append(f"{doc.name}: {section}.{name}")
    assert unknown == []


def test_no_reference_to_a_document_outside_the_repository() -> None:
    """The code, schemas and README cite docs/capi.md, docs/design.md, docs/style.md only."""
    stale = []
    for path in _cited_in():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.\./shared/|\b(?:CAPI|DESIGN|STYLE|TEST-BROKERS)\.md", line):
                stale.append(f"{path.relative_to(ROOT)}:{number}")
    assert stale == []


def _readme_reasons() -> set[str]:
    """The reason codes of README's "Dead-letter reasons" tables (``decode_*`` left out)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Dead-letter reasons") : text.index("### Warnings")]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            codes.update(re.findall(r"`([a-z_]+)`", first_cell))
    return codes


def test_the_readme_names_every_dead_letter_reason_and_no_other() -> None:
    """``dlq --reason`` accepts exactly the reasons the README explains: a reason a stage
    writes that the table does not name leaves an operator with a code and no meaning."""
    from stream.dlq import DATA_ERRORS, KNOWN_REASONS

    assert _readme_reasons() == set(KNOWN_REASONS)
    assert DATA_ERRORS < KNOWN_REASONS


def test_every_reason_the_code_writes_is_a_known_one() -> None:
    """Each literal reason of a refusal in stream/ (``Failure("expired", …)``,
    ``Problem(…)``, ``Rejected(…)``) is one ``dlq`` knows, so ``--reason`` can select it."""
    from stream.dlq import KNOWN_REASONS

    written: set[str] = set()
    for path in (ROOT / "stream").rglob("*.py"):
        written.update(
            re.findall(r"\b(?:Failure|Problem|Rejected)\(\s*\"([a-z_]+)\"", path.read_text())
        )
    assert len(written) >= 10  # the scan finds the refusals at all
    assert written <= set(KNOWN_REASONS), sorted(written - set(KNOWN_REASONS))
