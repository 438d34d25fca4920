"""Registration HTTP routes: parse, authorize, call the service layer, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from services.common.clock import ClockDep
from services.common.db import DbSession, DbWriteSession
from services.common.errors import wants_english
from services.common.identifiers import CreditCode, RegionCode
from services.common.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from services.common.paths import IdPath, IsoDate
from services.common.principal import (
    EmployerOrStaff,
    EmployerPrincipal,
    Principal,
    Staff,
    StaffAdmin,
    StaffOperator,
    check_own_unit,
    require,
)
from services.common.routing import ServiceRoute
from services.common.spreadsheets import XLSX_MEDIA_TYPE, read_upload
from services.registration import employers, imports, persons, rules, self_enrolment
from services.registration.errors import RegionalRuleNotFound
from services.registration.schemas import (
    EmployeeImportOut,
    EmployeeIn,
    EmployeeOut,
    EmployerIn,
    EmployerOut,
    EndEnrolmentIn,
    EnrolmentOut,
    PensionAwardIn,
    PensionAwardOut,
    PersonLookupIn,
    PersonProfile,
    RegionalRuleIn,
    RegionalRuleOut,
    RosterPage,
    RosterStatus,
    SelfEnrolmentIn,
    SeparationIn,
    StaffPersonView,
)

router = APIRouter(prefix="/registration/v1", tags=["registration"], route_class=ServiceRoute)

EmployerOrOperator = Annotated[Principal, Depends(require("employer", "staff", roles=["operator"]))]
CitizenL1 = Annotated[Principal, Depends(require("citizen", min_level=1))]
CitizenL2 = Annotated[Principal, Depends(require("citizen", min_level=2))]

CreditCodePath = Annotated[CreditCode, Path(description="unified social credit code")]
PersonIdPath = IdPath
EnrolmentIdPath = IdPath


# ---- employers ----------------------------------------------------------------------------


@router.post(
    "/employers", status_code=201, response_model=EmployerOut, summary="Register a unit",
    responses={403: {"description": "another employer's credit code"}, 409: {"description": "employer_already_registered"},
               422: {"description": "credit_code_invalid and other bad input"}},
)
async def register_employer(body: EmployerIn, clock: ClockDep, session: DbSession, principal: EmployerOrOperator) -> EmployerOut:
    """An employer registers itself (its own credit code only); staff operators register any unit."""
    return await employers.register_employer(session=session, clock=clock, principal=principal, body=body)


@router.get("/employers/{credit_code}", response_model=EmployerOut, summary="A registered unit",
            responses={404: {"description": "employer_not_found"}})
async def get_employer(credit_code: CreditCodePath, session: DbSession, principal: EmployerOrStaff) -> EmployerOut:
    check_own_unit(principal, credit_code)
    return employers.employer_out(await employers.get_employer(session=session, credit_code=credit_code))


@router.post(
    "/employers/{credit_code}/employees", status_code=201, response_model=EmployeeOut, summary="Enrol an employee",
    responses={409: {"description": "employee_already_enrolled, enrolment_conflict, person_is_pensioner"}},
)
async def enrol_employee(
    credit_code: CreditCodePath, body: EmployeeIn, clock: ClockDep, session: DbSession, principal: EmployerPrincipal,
) -> EmployeeOut:
    """增员. Registered more than 30 days after the hire date: accepted with `late` and `late_days`."""
    check_own_unit(principal, credit_code)
    return await employers.enrol_employee(
        session=session, clock=clock, principal=principal, credit_code=credit_code, body=body,
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary",
                                            "description": ".xlsx, or CSV in UTF-8 (BOM or not) or GB18030"}},
                },
            },
        },
    },
}
ImportIdPath = IdPath


@router.post(
    "/employers/{credit_code}/employee-imports", status_code=201, response_model=EmployeeImportOut,
    summary="Enrol employees from a spreadsheet (批量增员)",
    openapi_extra=_UPLOAD_BODY,
    responses={
        404: {"description": "employer_not_found"},
        413: {"description": "file_too_large (20 MB), spreadsheet_too_many_rows (100,000)"},
        415: {"description": "file_type_unsupported: not an .xlsx or a CSV (an .xls, an encrypted workbook, binary)"},
        422: {"description": "file_missing, spreadsheet_unreadable (damaged file, zip bomb), spreadsheet_empty, "
                             "spreadsheet_header_invalid (each wrong header named with its column)"},
    },
)
async def import_employees(
    credit_code: CreditCodePath, request: Request, clock: ClockDep, session: DbSession, principal: EmployerPrincipal,
) -> EmployeeImportOut:
    """A multipart `file`: `.xlsx` (first sheet) or CSV (UTF-8, GB18030) with the columns id_number, name,
    hire_date, monthly_wage_fen, insurance_types (English or the Chinese headers of the template). Each valid row
    is enrolled as `POST .../employees` would; each invalid one is listed in `errors` (row, column, code, message).
    A row whose person is already enrolled is refused `employee_already_enrolled`, so the same file sent twice
    enrols nobody twice."""
    check_own_unit(principal, credit_code)
    upload = await read_upload(request)
    record = await imports.import_employees(
        session=session, clock=clock, principal=principal, credit_code=credit_code, upload=upload,
    )
    return imports.import_out(record, en=wants_english(request))


@router.get(
    "/employers/{credit_code}/employee-imports/template", summary="The import template (.xlsx, Chinese headers)",
    response_class=Response, responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def import_template(credit_code: CreditCodePath, principal: EmployerOrStaff) -> Response:
    check_own_unit(principal, credit_code)
    return Response(
        imports.template_xlsx(), media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="employee-import-template.xlsx"'},
    )


@router.get(
    "/employers/{credit_code}/employee-imports/{import_id:id}", response_model=EmployeeImportOut,
    summary="An employee import again (counts and row errors)",
    responses={404: {"description": "employee_import_not_found"}},
)
async def get_import(
    credit_code: CreditCodePath, import_id: ImportIdPath, request: Request, session: DbSession,
    principal: EmployerOrStaff,
) -> EmployeeImportOut:
    check_own_unit(principal, credit_code)
    record = await imports.get_import(session=session, credit_code=credit_code, import_id=import_id)
    return imports.import_out(record, en=wants_english(request))


@router.get("/employers/{credit_code}/employees", response_model=RosterPage, summary="The roster, paginated",
            responses={404: {"description": "employer_not_found"}})
async def list_employees(
    credit_code: CreditCodePath,
    session: DbSession,
    principal: EmployerOrStaff,
    status: Annotated[RosterStatus | None, Query(description="active or ended")] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> RosterPage:
    check_own_unit(principal, credit_code)
    return await employers.roster(session=session, credit_code=credit_code, status=status, limit=limit, cursor=cursor)


@router.post(
    "/employers/{credit_code}/employees/{person_id:id}/separation", response_model=EmployeeOut,
    summary="End an employment (减员)",
)
async def separate_employee(
    credit_code: CreditCodePath, person_id: PersonIdPath, body: SeparationIn, clock: ClockDep, session: DbSession,
    principal: EmployerPrincipal,
) -> EmployeeOut:
    check_own_unit(principal, credit_code)
    return await employers.separate_employee(
        session=session, clock=clock, principal=principal, credit_code=credit_code,
        person_id=person_id, body=body,
    )


# ---- me -------------------------------------------------------------------------------------


@router.post(
    "/me/enrolments", status_code=201, response_model=EnrolmentOut, summary="Enrol myself (flexible or resident)",
    responses={409: {"description": "enrolment_conflict, person_is_pensioner"}},
)
async def enrol_self(body: SelfEnrolmentIn, clock: ClockDep, session: DbSession, principal: CitizenL1) -> EnrolmentOut:
    """The id number and name are the token's; a body carrying them is refused (422)."""
    return await self_enrolment.enrol_self(session=session, clock=clock, principal=principal, body=body)


@router.post("/me/enrolments/{enrolment_id:id}/end", response_model=EnrolmentOut, summary="Stop a self-enrolment")
async def end_self_enrolment(
    enrolment_id: EnrolmentIdPath, body: EndEnrolmentIn, clock: ClockDep, session: DbSession, principal: CitizenL2,
) -> EnrolmentOut:
    return await self_enrolment.end_self_enrolment(
        session=session, clock=clock, principal=principal, enrolment_id=enrolment_id, body=body,
    )


@router.get("/me", response_model=PersonProfile, summary="My insured profile")
async def me(session: DbSession, principal: CitizenL1) -> PersonProfile:
    return await persons.my_profile(session=session, principal=principal)


# ---- persons (staff) -------------------------------------------------------------------------


@router.get("/persons/{person_id:id}", response_model=StaffPersonView, response_model_exclude_none=False,
            summary="A person (staff); unmasked for operators, audited")
async def get_person(
    person_id: PersonIdPath,
    clock: ClockDep,
    session: DbWriteSession,  # the unmasked read is audited
    principal: Staff,
    unmasked: Annotated[bool, Query(description="show the full id number (operator or admin; audited)")] = False,
    reason: Annotated[str | None, Query(max_length=200, description="why the full id number is read")] = None,
) -> StaffPersonView:
    return await persons.staff_person_view(
        session=session, clock=clock, principal=principal, person_id=person_id, unmasked=unmasked,
        reason=reason,
    )


@router.post("/persons/lookup", response_model=StaffPersonView, summary="Find a person by id number (staff)",
             responses={404: {"description": "person_not_found"}})
async def lookup_person(body: PersonLookupIn, session: DbSession, principal: Staff) -> StaffPersonView:
    """The id number travels in the body, never in the URL; the answer is masked."""
    return await persons.staff_lookup(session=session, id_number=body.id_number)


@router.post(
    "/persons/{person_id:id}/pension-award", response_model=PensionAwardOut, summary="Award a pension",
    responses={409: {"description": "person_is_pensioner"}},
)
async def award_pension(
    person_id: PersonIdPath, body: PensionAwardIn, clock: ClockDep, session: DbSession, principal: StaffOperator,
) -> PensionAwardOut:
    return await persons.award_pension(
        session=session, clock=clock, principal=principal, person_id=person_id, body=body,
    )


# ---- regional rules ------------------------------------------------------------------------------


@router.get("/regional-rules/{region_code}", response_model=RegionalRuleOut, summary="The rule in force (public)",
            responses={404: {"description": "regional_rule_not_found"}})
async def get_regional_rule(
    region_code: Annotated[RegionCode, Path()],
    clock: ClockDep,
    session: DbSession,
    on: Annotated[IsoDate | None, Query(description="default: today (Asia/Shanghai)")] = None,
) -> RegionalRuleOut:
    """Whether flexible enrolment in the region needs a local household registration, at the region, city or province."""
    rule = await rules.rule_in_force(session=session, region_code=region_code, on=on or clock.today())
    if rule is None:
        raise RegionalRuleNotFound()
    return rules.rule_out(rule)


@router.put(
    "/regional-rules/{region_code}/{effective_from}", response_model=RegionalRuleOut,
    summary="Add or replace a dated regional rule (staff admin, audited)",
    responses={201: {"description": "created", "model": RegionalRuleOut}},
)
async def put_regional_rule(
    region_code: Annotated[RegionCode, Path()],
    effective_from: IsoDate,
    body: RegionalRuleIn,
    clock: ClockDep,
    session: DbSession,
    principal: StaffAdmin,
) -> Any:
    out, created = await rules.put_rule(
        session=session, principal=principal, region_code=region_code, effective_from=effective_from, body=body,
        now=clock.now(),
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)
