"""README.md's benchmark tables are the committed results, written by ``bench.readme``."""

from __future__ import annotations

from pathlib import Path

from bench import common, readme


def test_the_readme_tables_are_the_committed_results() -> None:
    """A benchmark's JSON changed without README.md (or the other way round) fails here:
    ``python -m bench --report`` writes the tables again."""
    text = (common.ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(readme.START) : text.index(readme.END) + len(readme.END)]
    assert block == readme.tables(readme.load())


def test_every_goal_of_the_results_is_a_row() -> None:
    """Each goal in the committed results has its row, met or missed, in the README block."""
    results = readme.load()
    stages = ("deliver", "normalize")
    goals = sum(len(r.get("goals", {})) for n, r in results.items() if n in stages)
    table = readme.tables(results)
    rows = [line for line in table.splitlines() if line.startswith(("| deliver:", "| normalize:"))]
    assert len(rows) == goals
    assert all("**met**" in row or "**missed**" in row for row in rows)


def test_update_writes_between_the_markers_only(tmp_path: Path) -> None:
    """Text around the markers stays; a file without them is left alone."""
    results = readme.load()
    page = tmp_path / "README.md"
    page.write_text(f"before\n{readme.START}\nold\n{readme.END}\nafter\n", encoding="utf-8")
    assert readme.update(page, results)
    assert page.read_text(encoding="utf-8") == f"before\n{readme.tables(results)}\nafter\n"
    bare = tmp_path / "OTHER.md"
    bare.write_text("no markers\n", encoding="utf-8")
    assert not readme.update(bare, results)
    assert bare.read_text(encoding="utf-8") == "no markers\n"
