"""What the repository cites must be something its reader can open.

1. No tracked file cites the reference notes kept outside the repository (the paper's text file
   and the notes under shared/reference/): cite the paper (arXiv 2205.12005) by section/table, the
   official code by file (github.com/alibaba/AliceMind, mPLUG/...), a dataset's own source, or a
   doc in this repo (docs/datasets.md, docs/model-differences.md, ...).
2. Every repo-relative path a tracked document or source file names (`mplug/...`, `docs/...`,
   `tests/...`, markdown links) exists, except the few files that runs write.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".smk", ".j2", ".txt", ".toml", ".cfg", ".ini"}
TEXT_NAMES = {"Snakefile", "Makefile"}

# Notes outside the repository (split so that this file does not match itself).
OUTSIDE_NOTES = ("shared/" + "reference", "official-" + "mplug.md", "smoke-" + "learnability",
                 "mplug-" + "paper.txt")

# Repo-relative paths named in text: a top-level folder of the repo, then a file of these kinds.
TOP_FOLDERS = ("mplug", "docs", "tests", "workflow", "config", "slurm", "profiles", "envs", "requirements")
PATH_RE = re.compile(r"(?<![\w/.-])((?:%s)/[\w./+-]*\.(?:py|md|yaml|smk|j2))\b" % "|".join(TOP_FOLDERS))
LINK_RE = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# Named on purpose though absent from a checkout: outputs of commands, example names.
NOT_IN_CHECKOUT = {
    "config/miniature.yaml": "written by `mplug miniature`",
    "config/x.yaml": "an example file name in an error message",
}
PLACEHOLDER = re.compile(r"[A-Z]{2,}")  # config/MYRUN.yaml, tableNN: a name to fill in


def tracked_text_files(root: Path = REPO) -> list[Path]:
    """The tracked text files (git ls-files); without git, every text file outside ignored folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=30)
        paths = [root / p for p in out.stdout.decode("utf-8").split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "data", "results", "reports", "resources", "logs", ".snakemake"}
        paths = [p for p in root.rglob("*") if not skip & set(p.relative_to(root).parts)]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)]


def outside_citations(files: list[Path], root: Path = REPO) -> list[str]:
    hits = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for note in OUTSIDE_NOTES:
                if note in line:
                    hits.append(f"{path.relative_to(root)}:{lineno}: cites {note}")
    return hits


def dangling_paths(files: list[Path], root: Path = REPO) -> list[str]:
    """Named repo-relative paths that exist neither from the repo root nor beside the file."""
    missing = []
    for path in files:
        if path == Path(__file__).resolve():  # its planted faults below
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        names = set(PATH_RE.findall(text))
        if path.suffix == ".md":
            names |= {n for n in LINK_RE.findall(text) if "://" not in n and not n.startswith("mailto:")}
        for name in sorted(names):
            clean = name.rstrip(".")
            if clean in NOT_IN_CHECKOUT or PLACEHOLDER.search(Path(clean).name):
                continue
            if not ((root / clean).exists() or (path.parent / clean).exists()):
                missing.append(f"{path.relative_to(root)}: {clean}")
    return missing


def test_no_file_cites_notes_outside_the_repository():
    hits = outside_citations(tracked_text_files())
    assert not hits, "cite the paper, the official code, the dataset's source or a repo doc:\n" + "\n".join(hits)


def test_every_named_repo_path_exists():
    missing = dangling_paths(tracked_text_files())
    assert not missing, "paths named but not in the repository:\n" + "\n".join(missing)


def test_the_checks_find_planted_faults(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("exists", encoding="utf-8")
    doc = tmp_path / "docs" / "a.md"
    doc.write_text("See [b](gone.md), [real](real.md), `mplug/nowhere.py`, docs/real.md and "
                   "`config/RUN.yaml`.\nFacts: ../" + OUTSIDE_NOTES[0] + "/x.md\n", encoding="utf-8")
    assert dangling_paths([doc], tmp_path) == ["docs/a.md: gone.md", "docs/a.md: mplug/nowhere.py"]
    assert outside_citations([doc], tmp_path) == [f"docs/a.md:2: cites {OUTSIDE_NOTES[0]}"]
