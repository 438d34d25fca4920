"""Events the registration service publishes: their schemas are its contract in
`services.contracts.registration`; OUTBOX writes them.
"""

from services.common.events import Outbox
from services.contracts.registration import (
    EMPLOYER_REGISTERED,
    ENROLMENT_ENDED,
    PENSION_AWARDED,
    PERSON_ENROLLED,
    PERSON_SEPARATED,
    EmployerRef,
    EmployerRegistered,
    EnrolmentEnded,
    PensionAwarded,
    PersonEnrolled,
    PersonRef,
    PersonSeparated,
)

OUTBOX = Outbox("registration")

__all__ = [
    "OUTBOX",
    "EMPLOYER_REGISTERED",
    "PERSON_ENROLLED",
    "PERSON_SEPARATED",
    "ENROLMENT_ENDED",
    "PENSION_AWARDED",
    "EmployerRef",
    "EmployerRegistered",
    "PersonRef",
    "PersonEnrolled",
    "PersonSeparated",
    "EnrolmentEnded",
    "PensionAwarded",
]
