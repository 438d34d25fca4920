"""Events the registration service publishes (its public contract to consumers).

Consumers (contribution, card, review) keep their own read models from these.
`id_hash` is the keyed hash of the id number (`services.common.pii.id_hash`), the
same in every service; `id_number_enc` is the AES-GCM ciphertext under the shared
PII key, for a consumer that must show the full number to its rightful owner.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from services.contracts.enums import Category, Insurance

EMPLOYER_REGISTERED = "registration.employer.registered.v1"
PERSON_ENROLLED = "registration.person.enrolled.v1"
PERSON_SEPARATED = "registration.person.separated.v1"
ENROLMENT_ENDED = "registration.person.enrolment_ended.v1"
PENSION_AWARDED = "registration.person.pension_awarded.v1"


class EmployerRef(BaseModel):
    credit_code: str
    name: str
    region_code: str
    work_injury_class: int


class EmployerRegistered(BaseModel):
    """A unit registered for social insurance."""

    credit_code: str
    name: str
    region_code: str
    work_injury_class: int  # 1-8
    registered_on: date


class PersonRef(BaseModel):
    person_id: str
    id_hash: str
    id_masked: str
    id_number_enc: str
    name: str
    birth_date: date
    sex: str  # male / female


class PersonEnrolled(PersonRef):
    """An enrolment opened: an employee by an employer, or a citizen's own (flexible, resident)."""

    enrolment_id: str
    category: Category
    region_code: str
    insurance_types: list[Insurance]
    start_month: str  # YYYY-MM, first month covered
    employer: EmployerRef | None = None  # employees only
    hire_date: date | None = None
    monthly_wage_fen: int | None = None
    late: bool = False
    late_days: int = 0
    household_region_code: str | None = None  # flexible


class PersonSeparated(BaseModel):
    """Employment ended; the employee enrolment ends with it."""

    person_id: str
    id_hash: str
    enrolment_id: str
    employer_credit_code: str
    separation_date: date
    last_month: str  # last employee month (YYYY-MM)
    reason: str | None = None


class EnrolmentEnded(BaseModel):
    """An enrolment ended from a month (the person stops contributing after `end_month`)."""

    person_id: str
    id_hash: str
    enrolment_id: str
    category: Category
    region_code: str
    end_month: str  # last month covered (YYYY-MM)
    reason: str  # self, employment (employer took over), separation, pension_award


class PensionAwarded(PersonRef):
    """The person is a pensioner from `from_date`; every open enrolment ended."""

    from_date: date
    region_code: str
    scheme: Category  # employee (incl. flexible) or resident pension scheme
    ended_enrolment_ids: list[str] = []
