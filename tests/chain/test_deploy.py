from __future__ import annotations

import json

from chain.deploy import deploy_project, role_id


def test_deploy_records_and_grants(chain, deployed):
    record = json.loads((chain.deployments_dir / f"{chain.chain_id}.json").read_text())
    entry = record["contracts"]["DepositToken"]
    assert entry["address"] == deployed["DepositToken"]
    assert entry["artifact_hash"] == chain.artifacts["DepositToken"].artifact_hash
    assert entry["block"] >= 1
    token = chain.contract("DepositToken")
    for name in ("bank", "lender"):
        assert token.call("hasRole", role_id("BANK_ROLE"), chain.signers[name].address)
    assert not token.call("hasRole", role_id("BANK_ROLE"), chain.signers["buyer"].address)
    assert token.call("hasRole", role_id("DEFAULT_ADMIN_ROLE"), chain.signers["deployer"].address)
    assert token.call("decimals") == 0


def test_second_run_reuses(chain, deployed):
    report = deploy_project(chain)
    assert report.reused == ["DepositToken", "LandRegister", "CredentialRegistry", "DealEscrow", "LoanBook"]
    assert not report.deployed and not report.granted
    assert report.addresses == deployed


def test_code_mismatch_redeploys(chain, deployed):
    file = chain.deployments_dir / f"{chain.chain_id}.json"
    record = json.loads(file.read_text())
    record["contracts"]["DepositToken"]["address"] = chain.signers["buyer"].address  # no code there
    file.write_text(json.dumps(record))
    try:
        report = deploy_project(chain)
        # the token is new, so is everything built on its address; links and roles follow
        assert report.deployed == ["DepositToken", "DealEscrow", "LoanBook"]
        assert report.reused == ["LandRegister", "CredentialRegistry"]
        escrow = chain.contract("DealEscrow", report.addresses["DealEscrow"])
        assert escrow.call("loanBook") == report.addresses["LoanBook"]
        assert escrow.call("token") == report.addresses["DepositToken"]
        assert report.addresses["DepositToken"] != deployed["DepositToken"]
    finally:
        record["contracts"]["DepositToken"]["address"] = deployed["DepositToken"]
        file.write_text(json.dumps(record))
