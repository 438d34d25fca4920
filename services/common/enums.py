"""Enumerations spelled exactly as the public contract (API.md) spells them."""

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


class LinePayer(StrEnum):
    employer = "employer"
    employee = "employee"
    individual = "individual"
    government = "government"


class PaidBy(StrEnum):
    employer = "employer"
    self = "self"
    agency = "agency"
