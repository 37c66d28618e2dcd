"""The README stays short and starts with the two commands CI runs; it names every command and
package; every link between the docs leads to a file and heading that exist."""

import re

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "launch" / "README.md",
         REPO / "benchmarks" / "README.md"]  # fmt: skip


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # '#' lines in code are no headings
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_readme_is_short_and_starts_with_make_train_and_make_test():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert text.index("```bash") < text.index("\n## ")  # before anything else
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make train", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert re.search(r"^train:", (REPO / "Makefile").read_text(), re.MULTILINE)


def test_readme_names_every_command_and_package():
    text = (REPO / "README.md").read_text()
    table = text.split("## The commands", 1)[1].split("\n## ", 1)[0]
    commands = {p.stem for p in (REPO / "jaxpcam").glob("*.py")} - {"__init__", "cli"}
    assert len(commands) == 7
    assert {c for c in commands if f"| `{c} " in table} == commands
    code_map = text.split("## Map of the code", 1)[1].split("\n## ", 1)[0]
    packages = {p.parent.name for p in (REPO / "jaxpcam").glob("*/__init__.py")}
    assert {p for p in packages if f"jaxpcam/{p}/" in code_map} == packages


def test_every_link_between_the_docs_leads_somewhere():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), (page.name, target)
            if anchor:
                assert anchor in _anchors(linked), (page.name, target)
