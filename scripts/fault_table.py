"""Prints the fault table of docs/faults.md by running its cases, tests/faults/, with pytest.

Every case runs the installed `mnist-lightning` as a user would, in a scratch folder with
small synthetic MNIST files, and checks what the user saw, the exit status and what survived;
each passing case is a row.

    python scripts/fault_table.py                 # all cases, a Markdown table
    python scripts/fault_table.py -k checkpoint   # pytest's -k: the cases whose name matches
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FAULTS = Path(__file__).resolve().parents[1] / "tests" / "faults"
# The table's sections, in the order a user meets them.
SECTIONS = [
    "test_checkpoints.py",
    "test_data_files.py",
    "test_settings.py",
    "test_outputs.py",
    "test_pictures.py",
    "test_signals.py",
    "test_runs.py",
    "test_ddp.py",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="pytest's -k expression: run the matching cases only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as table:
        pytest = [
            sys.executable,
            "-m",
            "pytest",
            str(FAULTS),
            "-q",
            "-p",
            "no:cacheprovider",
            *(["-k", args.k] if args.k else []),
        ]
        ran = subprocess.run(
            pytest, env={**os.environ, "MNIST_LIGHTNING_FAULT_TABLE": table}, check=False, stdout=sys.stderr
        )
        rows = [json.loads(p.read_text()) for p in Path(table).glob("*.json")]
    rows.sort(key=lambda row: (SECTIONS.index(row["file"]) if row["file"] in SECTIONS else len(SECTIONS), row["order"]))
    print("| # | Input | Command | What the user sees | Exit | What survived |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        cells = [
            str(i),
            row["input"],
            f"`{row['command']}`",
            row["says"].replace("|", "\\|"),
            str(row["exit"]),
            row["survived"],
        ]
        print("| " + " | ".join(cells) + " |")
    sys.exit(ran.returncode)


if __name__ == "__main__":
    main()
