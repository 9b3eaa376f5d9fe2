"""Run the contracts' random deal histories (the hypothesis state machine of
tests/contracts/test_invariants.py) on a real anvil until at least N actions ran.

    python -m scripts.bench_invariants [--actions 10000] [--steps 50] [--runs N]
    deedchain bench-invariants [same options]

The CI suite runs the same test with 25 runs of up to 25 steps (about 400 actions); this is the
benchmark job's size. It runs that test under pytest with DEEDCHAIN_HYPOTHESIS_* set, so the node,
the deployment and the checks are exactly the test's. pytest's report goes to stderr; the last line
of stdout is one JSON object: actions (rules run, the initialize step not counted), runs,
steps_per_run (the most a run may take; Hypothesis often stops a run earlier), seconds (the state
machine's own time), actions_per_second, invariant_checks, contract_calls, failures, wall_seconds.
Exit status 1 when an invariant or a predicted outcome failed (pytest's report shows the example).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/contracts/test_invariants.py"


def run(actions: int, steps: int, runs: int | None = None) -> dict[str, Any]:
    """Run the state machine for at least `actions` actions: first `runs` examples (default: as many
    as `actions` needs if every run took all its steps; most end earlier), then as many more as the
    actions per run seen so far say are missing. Returns the counts and timings."""
    runs = runs or math.ceil(actions / steps)
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "stats.json"
        env = {
            **os.environ,
            "DEEDCHAIN_HYPOTHESIS_EXAMPLES": str(runs),
            "DEEDCHAIN_HYPOTHESIS_STEPS": str(steps),
            "DEEDCHAIN_HYPOTHESIS_ACTIONS": str(actions),
            "DEEDCHAIN_INVARIANT_STATS": str(stats_file),
        }
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"]
        with subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:  # live, on stderr: stdout keeps only the JSON line
                sys.stderr.write(line)
        wall = time.perf_counter() - started
        stats: dict[str, Any] = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    result = {
        "actions": stats.get("actions", 0),
        "runs": stats.get("runs", 0),
        "steps_per_run": steps,
        "seconds": stats.get("seconds", 0.0),
        "invariant_checks": stats.get("invariant_checks", 0),
        "failures": 0 if proc.returncode == 0 else 1,
        "actions_per_second": 0.0,
        "contract_calls": stats.get("contract_calls", 0),
        "requested_actions": actions,
        "wall_seconds": round(wall, 3),
    }
    if result["seconds"]:
        result["actions_per_second"] = round(result["actions"] / result["seconds"], 1)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actions", type=int, default=10_000, help="at least this many actions (default 10000)"
    )
    parser.add_argument("--steps", type=int, default=50, help="most steps in one run (default 50)")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs in the first batch (default: --actions / --steps)"
    )


def _command(args: argparse.Namespace) -> int:
    if args.actions < 1 or args.steps < 1 or (args.runs is not None and args.runs < 1):
        print("bench-invariants: --actions, --steps and --runs must be positive", file=sys.stderr)
        return 2
    result = run(args.actions, args.steps, args.runs)
    print(json.dumps(result))
    ok = result["failures"] == 0 and result["actions"] >= args.actions
    return 0 if ok else 1


def add_command(sub: Any) -> None:
    """`deedchain bench-invariants` on the CLI's subparsers."""
    p = sub.add_parser("bench-invariants", help="the contracts' state machine for >= 10,000 actions (JSON)")
    add_arguments(p)
    p.set_defaults(func=_command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return _command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
