"""Contribution's own enumerations, spelled exactly as the public contract (API.md) spells them."""

from enum import StrEnum

from services.contracts.enums import PaidBy

__all__ = ["LinePayer", "PaidBy"]


class LinePayer(StrEnum):
    """Who pays a line: a resident's `government` subsidy is shown as a line, not in `total_fen`."""

    employer = "employer"
    employee = "employee"
    individual = "individual"
    government = "government"
