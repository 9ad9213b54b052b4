"""Every layer's private modules import first in a fresh interpreter (no circular import).

Before session 8, ``import phalanx.supervision._core`` (or ``_dynamic``,
``_supervisor``, ``_restarts``) and ``import phalanx.storage._positions`` as
a program's first phalanx import raised ImportError: runtime imported the
supervisor actor at module level, and storage imported the actors package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The modules at the bottom of a cycle: each is imported first, alone.
FIRST = (
    "phalanx.supervision._core",
    "phalanx.supervision._restarts",
    "phalanx.supervision._dynamic",
    "phalanx.supervision._supervisor",
    "phalanx.storage._positions",
    "phalanx.runtime._system",
    # Still imports the supervisor actor at module level: safe only while
    # nothing that runtime's __init__ imports imports it.
    "phalanx.runtime._control_actor_commands",
)

# One interpreter for all: phalanx's modules are dropped between imports, so
# each import starts from nothing of phalanx (~0.3 s each, not a process each).
_SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "phalanx" or m.startswith("phalanx.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{name}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_lower_layer_module_imports_first_without_a_circular_import() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *FIRST],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
