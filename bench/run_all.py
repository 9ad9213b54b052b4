"""Run every bench/*.py and write one JSON file with the machine description."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = parser.parse_args()
    results: dict[str, object] = {"machine": machine(), "at": time.time(), "benches": {}}
    failed = False
    for script in sorted(HERE.glob("*.py")):
        if script.name.startswith("_") or script.name == "run_all.py":
            continue
        print(f"bench: {script.name}", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            failed = True
            results["benches"][script.stem] = {"error": proc.stderr[-2000:]}  # type: ignore[index]
            continue
        results["benches"][script.stem] = json.loads(proc.stdout)  # type: ignore[index]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
