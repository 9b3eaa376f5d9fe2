"""(d) The oracles' process killed (SIGKILL, via DEEDCHAIN_CRASH_AT) at each checkpoint in turn
while several deals are in flight; each time it is started again and resumes. Every deal
completes, each effect once, and no institution sends one transaction more than its books hold
(a batch transaction several effects share counts once).

tests/pipeline/test_oracle_faults.py kills at every checkpoint x effect kind for one deal; here
the kills follow each other in one run of several deals, each restart armed with the next
checkpoint, so a restart's recovery (the outbox, the cursor) is itself interrupted.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from chain.session import ChainSession
from pipeline.faults import CRASH_ENV
from pipeline.service import Services
from scripts.bench import oracles_command
from tests.faults.conftest import Campaign

ROOT = Path(__file__).resolve().parents[2]
DEALS = 4
CHECKPOINTS = ["before_adapter", "after_adapter", "after_record", "after_broadcast", "after_mined"]


class OracleProcess:
    """`deedchain oracles` on the test chain and the institutions' databases, as a process."""

    def __init__(self, session: ChainSession, services: Services, folder: Path) -> None:
        self.cmd = oracles_command(session, services, 0.02)
        self.log = folder / "oracles.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, crash_at: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
        if crash_at:
            env[CRASH_ENV] = crash_at
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def exit_code(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_oracles_killed_at_each_checkpoint_in_turn_resume(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path
) -> None:
    services = Services.build(chain, tmp_path, poll_interval=0.02)
    campaign = Campaign(chain, services)
    # set up while no oracle runs: from here on the institutions' keys are the process's alone
    for _ in range(DEALS):
        campaign.open()
    before = campaign.oracle_nonces()
    stop = threading.Event()
    driver = threading.Thread(target=services.driver.run, args=(stop,), daemon=True, name="driver")
    driver.start()
    oracles = OracleProcess(chain, services, tmp_path)
    armed = list(CHECKPOINTS)
    killed_at: list[str] = []
    oracles.start(armed[0])
    try:
        deadline = time.monotonic() + 90
        while not (campaign.books_complete() and all(s.terminal for s in campaign.states().values())):
            assert time.monotonic() < deadline, f"{campaign.stuck()}\n{oracles.tail()}"
            code = oracles.exit_code()
            if code is not None:
                assert code == -9 and armed, oracles.tail()  # it may only die by its failpoint
                killed_at.append(armed.pop(0))
                oracles.start(armed[0] if armed else None)  # resume, armed with the next checkpoint
            time.sleep(0.05)
    finally:
        oracles.stop()
        stop.set()
        driver.join(10)
    assert killed_at == CHECKPOINTS  # each failpoint fired, in turn
    campaign.assert_each_effect_once()
    after = campaign.oracle_nonces()
    assert {n: after[n] - before[n] for n in after} == campaign.effect_txs()
    # the deals' reports, due together, went out as one batch transaction through the kills
    assert max(campaign.shared_txs().values(), default=0) == DEALS, campaign.shared_txs()
