"""The documentation stays true: the generated benchmark page is current, the README is a
front page that starts with the two commands, and every relative link leads to a file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TWO_COMMANDS = """```bash
make install && make demo   # set up .venv, then run the gateway end to end on two real models
make test                   # the whole suite (real server on loopback, real ONNX Runtime)
```"""
# [text](target) and ![alt](target), the target up to a space or ")" (a title may follow).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())  # links inside code blocks are not links
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not t.startswith(("http://", "https://", "mailto:", "#"))]


def test_benchmarks_page_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--check"]) == 0, capsys.readouterr().out


def test_readme_is_a_front_page_starting_with_the_two_commands() -> None:
    text = README.read_text()
    assert TWO_COMMANDS in text
    before = text.split(TWO_COMMANDS, 1)[0]
    assert all(not line.strip() or line.startswith("# ") for line in before.splitlines()), (
        "only the title may come before the two commands"
    )
    assert len(text.splitlines()) < 250


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files(page: Path) -> None:
    missing = [
        target
        for target in relative_links(page)
        if not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_every_docs_page_links_back_to_the_readme() -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert "../README.md" in relative_links(page), page.name


def test_report_renders_unknown_shapes_and_shows_missed_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = {
        "machine": {"cpu": "test"},
        "targets": {"latency_ms_max": 1.0},
        "cases": [{"case": "small", "latency_ms": 2.5, "latency_ok": False}],
        "nested": {"deep": {"values": [1, 2, 3]}},
    }
    (tmp_path / "newbench.json").write_text(json.dumps(result))
    (tmp_path / "broken.json").write_text("{not json")
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    page = report.render()
    assert "small | latency (latency_ms_max = 1) | 2.5 | **MISSED** |" in page
    assert "`nested.deep.values` | 1, 2, 3" in page
    assert "Could not read bench/results/broken.json" in page
