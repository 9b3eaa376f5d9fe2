"""`deedchain bench-invariants`: the contracts' state machine, sized by actions, reported as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_invariants_runs_at_least_the_actions_asked_and_reports_them():
    done = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "bench-invariants", "--actions", "50", "--steps", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"actions", "runs", "steps_per_run", "seconds", "invariant_checks", "failures"} <= set(result)
    assert result["failures"] == 0 and result["actions"] >= 50 and result["steps_per_run"] == 10
    # every run had its initialize step and at most 9 more; each action was checked at least once
    assert result["runs"] * 9 >= result["actions"] and result["invariant_checks"] >= result["actions"]
    assert 0 < result["seconds"] < result["wall_seconds"] and result["actions_per_second"] > 0
    assert "passed" in done.stderr  # pytest's report went to stderr, stdout kept the JSON alone
    assert len(done.stdout.strip().splitlines()) == 1


def test_bench_invariants_refuses_nonsense_sizes():
    done = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "bench-invariants", "--actions", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "must be positive" in done.stderr and done.stdout == ""
