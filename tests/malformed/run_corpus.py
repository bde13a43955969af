"""Run every malformed config of this folder through the CLI in one fresh process.

Prints a JSON mapping: file name -> {rc, stderr, created (files left in the working
directory), ray (whether Ray was initialised)}. Used by tests/cli/test_malformed.py.
"""

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from tuneprune.cli import main

results = {}
for path in sorted(Path(__file__).parent.glob("*.yaml")):
    command = path.read_text().splitlines()[0].split(":", 1)[1].strip()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc: int | str | None = main([command, str(path)])
            except SystemExit as exc:
                rc = exc.code
        ray_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        results[path.name] = {"rc": rc, "stderr": err.getvalue(), "created": sorted(os.listdir(work)), "ray": ray_up}
        os.chdir("/")
print(json.dumps(results))
