"""Titles as the chain has them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.deps import BrokerageDep, CurrentBroker, ServicesDep
from api.routes import COMMON, _error
from api.schemas import RegisterEntry, TitleView
from pipeline.service import Services

router = APIRouter(prefix="/parcels", tags=["parcels"], responses=COMMON)
# The entries that close another; the register stores ref 0 in every other entry, which reads as a
# reference to entry 0 (the audit's rule: only these get a ref).
REFERRING = frozenset({"cancellation", "discharge"})


def entry_view(entry: dict[str, Any]) -> RegisterEntry:
    return RegisterEntry.model_validate(
        {**entry, "ref": entry["ref"] if entry["kind"] in REFERRING else None}
    )


def title_view(title: dict[str, Any]) -> TitleView:
    return TitleView.model_validate(
        {
            **title,
            "encumbrances": [entry_view(e) for e in title["encumbrances"]],
            "history": [entry_view(e) for e in title["history"]],
        }
    )


def resolve(services: Services, parcel: str) -> str:
    """A sample parcel's name, a registry number or a 0x id -> the 0x parcel id (404 if unknown)."""
    return services.brokerage.resolve_parcel(services.institutions.parcels.get(parcel, parcel))


@router.get(
    "/{parcel}",
    response_model=TitleView,
    summary="The title of a parcel: description, owner, encumbrances, full register history",
    responses={404: _error("no such parcel on the register (`parcel_not_found`)")},
)
def get_title(
    services: ServicesDep,
    brokerage: BrokerageDep,
    _broker: CurrentBroker,
    parcel: Annotated[
        str,
        Path(
            min_length=1,
            max_length=100,
            pattern=r"^[0-9A-Za-z][0-9A-Za-z_\-]*$",
            description="registry number, 0x parcel id, or a sample parcel's name",
            examples=["1168010600-10316-0000"],
        ),
    ],
) -> TitleView:
    return title_view(brokerage.title(resolve(services, parcel)))
