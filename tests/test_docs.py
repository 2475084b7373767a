"""The README and docs/ stay honest: links resolve, the code's checkpoint citations exist, every setting is documented."""

from __future__ import annotations

import re
from pathlib import Path

from glmtts_mcp.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _relative_links(page: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
    return [t for t in targets if "://" not in t and not t.startswith("mailto:")]


def test_readme_links_every_docs_page_and_every_link_resolves() -> None:
    readme_links = set(_relative_links(ROOT / "README.md"))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme_links, f"README does not link docs/{page.name}"
    for page in PAGES:
        for target in _relative_links(page):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links a missing file: {target}"


def test_code_cites_checkpoint_facts_that_exist_in_the_repository() -> None:
    """Code and tests cite docs/checkpoint.md §n; each cited section is a heading there, and no citation
    points at a file outside the repository."""
    headings = re.findall(r"^#{2,3} (\d+[a-z]?(?:\.\d+)?)\.? ", (ROOT / "docs" / "checkpoint.md").read_text(), re.M)
    sections = set(headings)
    outside = "CHECKPOINT" + ".md"  # the research notes the facts came from, kept outside the repository
    cited: set[str] = set()
    for path in [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert outside not in text, f"{path.relative_to(ROOT)} cites {outside}, which is not in the repository"
        for match in re.finditer(r"docs/checkpoint\.md §(\d+[a-z]?(?:\.\d+)?)(?:-§(\d+))?", text):
            cited.update(g for g in match.groups() if g)
    assert cited, "no code cites docs/checkpoint.md"
    assert cited <= sections, f"cited sections missing from docs/checkpoint.md: {sorted(cited - sections)}"


def test_configuration_page_documents_every_setting() -> None:
    table = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`{name}`" in table and f"`GLMTTS_MCP_{name.upper()}`" in table, f"docs/configuration.md lacks {name}"


def test_readme_reads_in_five_minutes_and_opens_with_the_two_commands() -> None:
    """Detail belongs in docs/: the README stays at most 200 lines, its first block the two commands."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines (at most 200): move detail into docs/"
    assert lines[2:6] == ["```bash", lines[3], lines[4], "```"], lines[:7]
    assert lines[3].startswith("bash scripts/serve.sh ") and lines[4].startswith("bash scripts/test.sh ")
