"""Run the manual's runnable command blocks as a user would, check its links, and fail on any error.

The manual is ``README.md`` and the pages of ``docs/``. Their commands run in this order:
``README.md`` first, then the pages named in ``PAGES`` in that order (the order a new user
reads them: installation, training, searches, ...), then any other page of ``docs/`` in
alphabetical order, so that a page added without a place in ``PAGES`` is still checked.

A block is runnable when the line before its opening fence is ``<!-- runnable -->``. Its
commands (one per line; a trailing backslash continues a line; ``#`` lines are comments)
run in order, each with ``bash -c``, all of them in one fresh temporary directory holding a
copy of the repository's files (what a fresh clone has), with this interpreter's ``bin``
directory first on PATH (what ``source .venv/bin/activate`` does). A later page may use what
an earlier command wrote (a report of the search the README ran). A command that an earlier
block already ran, character for character, is not run again (the README and a page may
both show it). A command fails the check when it exits non-zero, prints a Python traceback,
or prints rich's ``…`` (a number cut to fit its column).

Links: every relative link and image of ``README.md``, ``CONTRIBUTING.md``, ``CHANGELOG.md``
and the pages of ``docs/`` (outside code) must name a file of the repository, and a
``#anchor`` a heading of the page it points to; a broken one fails the check.

    .venv/bin/python scripts/check_readme.py [FILE.md ...] [--links-only] [--keep] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
TIMEOUT_S = 900
FENCE = re.compile(r"^\s*```")
OPENING_FENCE = re.compile(r"^```(\w*)\s*$")
# The order in which the pages' commands run, after README.md (a task's prerequisites first).
PAGES = (
    "installation.md",
    "training.md",
    "searches.md",
    "packing.md",
    "early-stopping.md",
    "studies.md",
    "evolution.md",
    "relevance.md",
    "reports.md",
    "cluster.md",
    "performance.md",
    "formulas.md",
    "architecture.md",
)
# Files whose links are checked besides the manual's pages (they run no commands).
LINKED_ONLY = ("CONTRIBUTING.md", "CHANGELOG.md")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def manual_files(root: Path) -> list[Path]:
    """README.md, then the pages of docs/ in the order of ``PAGES``, then the other pages alphabetically."""
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    docs = root / "docs"
    listed = [docs / name for name in PAGES if (docs / name).is_file()]
    others = sorted(path for path in docs.glob("*.md") if path.name not in PAGES) if docs.is_dir() else []
    return files + listed + others


def runnable_commands(text: str) -> list[str]:
    """The commands of every block marked runnable, in order."""
    commands: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER and i + 1 < len(lines) and OPENING_FENCE.match(lines[i + 1]):
            i += 2
            pending = ""
            while i < len(lines) and not lines[i].startswith("```"):
                line = lines[i].rstrip()
                i += 1
                if not pending and (not line.strip() or line.lstrip().startswith("#")):
                    continue
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                    continue
                commands.append(pending + line)
                pending = ""
        i += 1
    return commands


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a markdown file's headings (outside code), repeated ones numbered as GitHub does."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, inline code removed."""
    lines, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def broken_links(root: Path, files: list[Path]) -> list[str]:
    """``FILE: target (why)`` for every relative link of ``files`` that names no file or no heading."""
    problems: list[str] = []
    for path in files:
        text = path.read_text()
        for line in prose_lines(text):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                    continue  # http:, https:, mailto: ...: outside the repository
                where, _, anchor = target.partition("#")
                destination = (path.parent / where).resolve() if where else path
                name = f"{path.relative_to(root)}: {target}"
                if not destination.exists():
                    problems.append(f"{name} (no such file)")
                elif not destination.resolve().is_relative_to(root.resolve()):
                    problems.append(f"{name} (outside the repository)")
                elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text()):
                    problems.append(f"{name} (no heading #{anchor} in {destination.relative_to(root.resolve())})")
    return problems


def fresh_copy(root: Path, destination: Path) -> None:
    """The repository's tracked and unignored files, as a fresh clone of this working tree has them."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = root / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def problem(code: int, output: str) -> str | None:
    if code != 0:
        return f"exit code {code}"
    if "Traceback (most recent call last)" in output:
        return "a traceback"
    if "…" in output:
        return "a cut number (…)"
    return None


def run_commands(root: Path, blocks: list[tuple[Path, list[str]]], keep: bool) -> tuple[int, int]:
    """Run every file's commands in order in one fresh copy of ``root``; (commands run, failed)."""
    workdir = Path(tempfile.mkdtemp(prefix="tuneprune-readme-"))
    fresh_copy(root, workdir)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TUNEPRUNE_INDEX"] = str(workdir / ".tuneprune-index.json")  # the user's index stays untouched
    print(f"check_readme: running in {workdir}", flush=True)
    done: set[str] = set()
    ran = failed = 0
    try:
        for path, commands in blocks:
            print(f"check_readme: {path.relative_to(root)}: {len(commands)} commands", flush=True)
            for command in commands:
                if command in done:
                    print(f"[same]          {command}", flush=True)
                    continue
                done.add(command)
                ran += 1
                t0 = time.monotonic()
                try:
                    proc = subprocess.run(
                        ["bash", "-c", command], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S,
                    )  # fmt: skip
                    code, output = proc.returncode, proc.stdout
                except subprocess.TimeoutExpired as err:
                    code, output = 124, err.stdout if isinstance(err.stdout, str) else ""
                why = problem(code, output)
                print(f"[{'FAIL' if why else ' ok '}] {time.monotonic() - t0:6.1f} s  {command}", flush=True)
                if why:
                    failed += 1
                    tail = output.splitlines()[-25:]
                    print(f"       {why}; its output ends with:\n" + "\n".join("       " + line for line in tail))
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return ran, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="only these files, in this order (default: the whole manual)"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this script's)")
    parser.add_argument("--links-only", action="store_true", help="check the links, run no command")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    files = [path.resolve() for path in args.files] or manual_files(root)
    if not files:
        print(f"check_readme: no README.md or docs/*.md under {root}", file=sys.stderr)
        return 1

    linked = files + [root / name for name in LINKED_ONLY if (root / name).is_file() and not args.files]
    links = broken_links(root, linked)
    for line in links:
        print(f"[LINK] {line}", flush=True)
    print(f"check_readme: links of {len(linked)} files: {len(links)} broken")
    if args.links_only:
        return 1 if links else 0

    blocks = [(path, runnable_commands(path.read_text())) for path in files]
    if not any(commands for _, commands in blocks):
        print(f"check_readme: no block marked {MARKER} in {', '.join(str(p) for p in files)}", file=sys.stderr)
        return 1
    started = time.monotonic()
    ran, failed = run_commands(root, blocks, args.keep)
    print(f"check_readme: the manual's commands took {time.monotonic() - started:.0f} s")
    print(f"check_readme: {ran - failed} passed, {failed} failed, {len(links)} broken links")
    return 1 if failed or links else 0


if __name__ == "__main__":
    sys.exit(main())
