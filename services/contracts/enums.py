"""Enumerations that events carry, spelled exactly as the public contract (API.md) spells them."""

from enum import StrEnum


class Insurance(StrEnum):
    pension = "pension"
    medical = "medical"
    unemployment = "unemployment"
    work_injury = "work_injury"
    maternity = "maternity"


class Category(StrEnum):
    employee = "employee"
    flexible = "flexible"
    resident = "resident"


class PaidBy(StrEnum):
    """Who paid a month, as records and `contribution.declaration.paid.v1` say."""

    employer = "employer"
    self = "self"
    agency = "agency"
    family = "family"  # a bound relative (card's family service) paid a person's declaration


class FamilyRelation(StrEnum):
    """How a bound relative is related to the citizen who added them (card's family service)."""

    spouse = "spouse"
    parent = "parent"
    child = "child"
    sibling = "sibling"
    grandparent = "grandparent"
    grandchild = "grandchild"
    other = "other"
