"""The documentation says what the code does: one list of settings, and no reference to a missing file.

Settings are documented once, in README.md's configuration table, and read from
gateway/config.py's Config dataclass: the two must name the same settings, both
ways (a setting nobody can find is as bad as a documented one that does nothing).
Every path the repository's files point a reader to (`deploy/minio-init.sh`,
`[the contract](#the-http-api)`) must exist.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from gateway.config import Config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETTING = re.compile(r"`(GATEWAY_[A-Z0-9_]+)`")

# A path into the repository as prose, comments and configuration write it: words joined by slashes,
# not part of a URL, an absolute path, a variable or a longer path (what precedes it is none of these).
PATH_REFERENCE = re.compile(r"(?<![\w./:@$~{<>=-])(?:\./)?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+/?")
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
TEXT_SUFFIXES = {".md", ".py", ".yml", ".yaml", ".sh", ".cfg", ".toml", ".template", ".example", ".json", ".sql",
                 ".txt", ".conf", ".js", ".html", ".css", ".ini"}
TEXT_NAMES = {"dev", "Dockerfile", "run", ".gitignore"}


# --- the settings ------------------------------------------------------------------------------------

def section(text: str, heading: str) -> str:
    """The body of the markdown section with this heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert match, f"README.md has no section {heading!r}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def documented_settings() -> list[str]:
    """The GATEWAY_* names in the first column of README.md's configuration table, in order."""
    names = []
    for line in section(README.read_text(), "Configuration").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) > 1:
            names += SETTING.findall(cells[0])
    return names


def config_settings() -> set[str]:
    return {f"GATEWAY_{field.name.upper()}" for field in dataclasses.fields(Config)}


def test_the_readme_documents_every_setting_of_the_gateway():
    documented = documented_settings()
    assert documented, "README.md's configuration table lists no GATEWAY_ setting"
    missing = sorted(config_settings() - set(documented))
    assert not missing, f"settings of gateway/config.py missing from README.md's configuration table: {missing}"


def test_the_readme_documents_no_setting_the_gateway_lacks():
    documented = documented_settings()
    unknown = sorted(set(documented) - config_settings())
    assert not unknown, f"README.md's configuration table lists settings gateway/config.py does not read: {unknown}"
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not twice, f"documented more than once: {twice}"


# --- references between files ---------------------------------------------------------------------------

def repository_files() -> list[Path]:
    """Files of the repository (tracked or new, not ignored), as git sees them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the repository's files are unknown")
    return sorted({ROOT / name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()})


def text_files() -> list[Path]:
    return [path for path in repository_files() if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES]


def top_level_names() -> set[str]:
    return {path.relative_to(ROOT).parts[0] for path in repository_files()}


def path_references(text: str, top_level: set[str]) -> set[str]:
    """Relative paths into the repository that ``text`` names: those starting with one of its top-level entries."""
    found = set()
    for match in PATH_REFERENCE.finditer(text):
        reference = match.group(0).removeprefix("./").rstrip(".")
        following = text[match.end() : match.end() + 1]
        if following in ("*", "<", "{", "$") or "//" in reference:
            continue  # a pattern or a template, not a path
        if reference.split("/")[0] in top_level:
            found.add(reference)
    return found


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = "".join(ch for ch in text if ch in " -" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", markdown.read_text(), flags=re.M | re.S)
    return {github_anchor(heading) for heading in re.findall(r"^#+ (.+?)\s*#*\s*$", text, re.M)}


def markdown_link_problems(path: Path) -> list[str]:
    problems = []
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    for target in MARKDOWN_LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or target.startswith("mailto:"):
            continue
        linked = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not linked.exists():
            problems.append(f"{path.relative_to(ROOT)}: link to missing {target}")
        elif parts.fragment and linked.suffix == ".md" and parts.fragment not in anchors(linked):
            problems.append(f"{path.relative_to(ROOT)}: link to missing heading {target}")
    return problems


def test_every_markdown_link_resolves():
    problems = [problem for path in repository_files() if path.suffix == ".md" for problem in markdown_link_problems(path)]
    assert not problems, "\n".join(problems)


def test_every_path_a_file_names_exists():
    top_level = top_level_names()
    problems = []
    for path in text_files():
        for reference in sorted(path_references(path.read_text(errors="replace"), top_level)):
            if not (ROOT / reference).exists():
                problems.append(f"{path.relative_to(ROOT)} names {reference}, which does not exist")
    assert not problems, "\n".join(problems)


# --- the checks themselves ---------------------------------------------------------------------------------

def test_path_references_are_found_where_people_write_them():
    # (Top-level names this repository does not have, so the real scan skips these lines.)
    top = {"ops", "GUIDE.md", "server"}
    text = (
        "see ops/GUIDE.md, and ./ops/init.sh:/ops/init.sh:ro; (server/config.py)\n"
        "not https://github.com/ops/x.md nor /etc/ops/x nor ${STATE}/ops/x nor server/migrations/*.sql\n"
        "nor shared/api-contract.md nor 127.0.0.1:8080/ops/x nor var/cdn/cdn.conf"
    )
    assert path_references(text, top) == {"ops/GUIDE.md", "ops/init.sh", "server/config.py"}


def test_github_anchors():
    assert github_anchor("The HTTP API") == "the-http-api"
    assert github_anchor("1. Configure") == "1-configure"
    assert github_anchor("Deploying with `docker-compose`") == "deploying-with-docker-compose"
    assert github_anchor("The command-line client: `dbx`") == "the-command-line-client-dbx"
