"""E-certificates into the wallet the banks read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import BrokerageDep, CurrentBroker, IdempotencyDep, done
from api.routes import COMMON, WRITE, log_event
from api.schemas import CredentialIn, CredentialView

router = APIRouter(prefix="/credentials", tags=["credentials"], responses={**COMMON, **WRITE})


@router.post(
    "",
    status_code=201,
    response_model=CredentialView,
    summary="Keep a party's e-certificate (document + issuer's signature) for the banks",
)
def submit_credential(
    brokerage: BrokerageDep, _broker: CurrentBroker, idem: IdempotencyDep, body: CredentialIn
) -> Any:
    result = brokerage.submit_credential(body.document.model_dump(mode="json"), body.signature)
    log_event("credential", None, None, hash=result["hash"], kind=result["kind"])
    return done(idem, 201, CredentialView.model_validate(result))
