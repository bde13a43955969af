"""Run the README's runnable command blocks as a user would, and fail on any error.

A block is runnable when the line before its opening fence is ``<!-- runnable -->``. Its
commands (one per line; a trailing backslash continues a line; ``#`` lines are comments)
run in order, each with ``bash -c``, from a fresh temporary directory holding a copy of the
repository's files (what a fresh clone has), with this interpreter's ``bin`` directory first
on PATH (what ``source .venv/bin/activate`` does). A command fails the check when it exits
non-zero, prints a Python traceback, or prints rich's ``…`` (a number cut to fit).

    .venv/bin/python scripts/check_readme.py [README.md] [--keep]
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
FENCE = re.compile(r"^```(\w*)\s*$")


def runnable_commands(readme: str) -> list[str]:
    """The commands of every block marked runnable, in order."""
    commands: list[str] = []
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER and i + 1 < len(lines) and FENCE.match(lines[i + 1]):
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


def fresh_copy(destination: Path) -> None:
    """The repository's tracked and unignored files, as a fresh clone of this working tree has them."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", nargs="?", type=Path, default=ROOT / "README.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    commands = runnable_commands(args.readme.read_text())
    if not commands:
        print(f"check_readme: no block marked {MARKER} in {args.readme}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="tuneprune-readme-"))
    fresh_copy(workdir)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TUNEPRUNE_INDEX"] = str(workdir / ".tuneprune-index.json")  # the user's index stays untouched
    print(f"check_readme: {len(commands)} commands from {args.readme} in {workdir}", flush=True)
    started = time.monotonic()
    failed = 0
    try:
        for command in commands:
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
                print(f"       {why}; its output ends with:\n" + "\n".join("       " + line for line in output.splitlines()[-25:]))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"check_readme: the README's commands took {time.monotonic() - started:.0f} s")
    print(f"check_readme: {len(commands) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
