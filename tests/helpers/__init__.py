"""What the tests share: synthetic MNIST files, the installed CLI as a user runs it, and run checks.

Imported as `helpers` (pytest puts tests/ on sys.path through tests/conftest.py), before torch.
"""

import os

# `pytest -n auto` runs a test on each core, and most start a CLI process: one thread each, not one a core
# each (torch's threads spinning against the other test's cost ~8% of the suite). Before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
