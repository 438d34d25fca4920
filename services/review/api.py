"""Review HTTP routes: parse, authorize, call the service layer, shape the answer."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError

from services.common.audit import record_audit
from services.common.clock import ClockDep
from services.common.db import DbSession, DbWriteSession
from services.common.errors import wants_english
from services.common.events import ReadModelRoute
from services.common.identifiers import AsciiInt, RegionCode
from services.common.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from services.common.paths import CreditCodePath, IdPath, IsoDate
from services.common.principal import (
    EmployerOrStaff,
    EmployerPrincipal,
    Principal,
    StaffAdmin,
    StaffOperator,
    StaffReviewer,
    check_own_unit,
    require,
)
from services.common.spreadsheets import XLSX_MEDIA_TYPE, is_multipart, read_upload
from services.review.certification import service as cert
from services.review.declarations import overdue as overdue_svc
from services.review.declarations import roster as roster_svc
from services.review.declarations import service as decl
from services.review.declarations import sheets
from services.review.declarations.receipt import render_receipt
from services.review.errors import CertifiedOnInvalid
from services.review.rules import put_rule, rule_in_force, rule_out
from services.review.schemas import (
    CertificationMethod,
    CertificationOut,
    CertificationStatus,
    DecisionIn,
    DeclarationCheckOut,
    DeclarationLinesIn,
    DeclarationOut,
    DeclarationPage,
    DeclarationStatus,
    DeclaredLinePage,
    OverdueIn,
    OverdueOut,
    ReviewRuleIn,
    ReviewRuleOut,
    RosterPage,
    StaffCertificationIn,
    SuspensionIn,
    SuspensionOut,
    SweepOut,
)

router = APIRouter(prefix="/review/v1", tags=["review"], route_class=ReadModelRoute)

Citizen = Annotated[Principal, Depends(require("citizen"))]
CitizenFreshFace = Annotated[Principal, Depends(require("citizen", min_level=3, fresh=True, face=True))]
YearPath = Annotated[AsciiInt, Path(ge=2000, le=2100, description="the wage year declared")]
PersonIdPath = IdPath
_EMPLOYER_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "employer_not_found, annual_declaration_not_found"},
}
DeclIdPath = IdPath


# ---- regional review rules -------------------------------------------------------------


@router.get("/rules/{region_code}", response_model=ReviewRuleOut, summary="The review rule in force (public)",
            responses={404: {"description": "review_rule_not_found"}})
async def get_rule(
    clock: ClockDep, session: DbSession, region_code: Annotated[RegionCode, Path()],
    on: Annotated[IsoDate | None, Query(description="date (default today, Asia/Shanghai)")] = None,
) -> Any:
    return rule_out(await rule_in_force(session=session, region_code=region_code, on=on or clock.today()))


@router.put(
    "/rules/{region_code}/{effective_from}", response_model=ReviewRuleOut,
    summary="Add or replace a dated regional review rule (staff admin, audited)",
    responses={201: {"description": "created"}},
)
async def put_review_rule(
    clock: ClockDep, response: Response, session: DbSession, principal: StaffAdmin,
    region_code: Annotated[RegionCode, Path()], effective_from: IsoDate, body: ReviewRuleIn,
) -> Any:
    out, created = await put_rule(
        session=session, clock=clock, actor=principal, region_code=region_code,
        effective_from=effective_from, body=body,
    )
    response.status_code = 201 if created else 200
    return out


# ---- pensioner certification -----------------------------------------------------------


@router.get("/me/certification", response_model=CertificationStatus, summary="My certification status",
            responses={404: {"description": "pensioner_not_found: the caller is not a pensioner"}})
async def my_certification(clock: ClockDep, session: DbSession, principal: Citizen) -> Any:
    p = await cert.pensioner_by_id_number(session=session, id_number=principal.id_number)
    return await cert.status_of(session=session, clock=clock, pensioner=p)


@router.post(
    "/me/certification", response_model=CertificationOut, status_code=201,
    responses={404: {"description": "pensioner_not_found: the caller is not a pensioner"}},
    summary="Certify by live face recognition (level 3, face authentication under 5 minutes old)",
)
async def certify_me(clock: ClockDep, session: DbSession, principal: CitizenFreshFace) -> CertificationOut:
    p = await cert.pensioner_by_id_number(session=session, id_number=principal.id_number, lock=True)
    return await cert.certify(
        session=session, clock=clock, pensioner=p, method=CertificationMethod.face, actor=principal,
    )


@router.get(
    "/persons/{person_id:id}/certification", response_model=CertificationStatus,
    summary="A pensioner's certification status (staff operator)",
)
async def person_certification(clock: ClockDep, session: DbSession, principal: StaffOperator, person_id: PersonIdPath) -> Any:
    p = await cert.pensioner_by_person_id(session=session, person_id=person_id)
    return await cert.status_of(session=session, clock=clock, pensioner=p)


@router.post(
    "/persons/{person_id:id}/certifications", response_model=CertificationOut, status_code=201,
    summary="Record a community or home visit, or a data match, with evidence (staff operator, audited)",
)
async def staff_certify(
    clock: ClockDep, session: DbSession, principal: StaffOperator, person_id: PersonIdPath, body: StaffCertificationIn,
) -> CertificationOut:
    p = await cert.pensioner_by_person_id(session=session, person_id=person_id, lock=True)
    if body.certified_on is not None and not (p.from_date <= body.certified_on <= clock.today()):
        raise CertifiedOnInvalid()
    out = await cert.certify(
        session=session, clock=clock, pensioner=p, method=CertificationMethod(str(body.method)), actor=principal,
        evidence=body.evidence, certified_on=body.certified_on,
    )
    record_audit(
        session, actor=principal, action="pension.certify", target_type="pensioner", target_id=person_id,
        at=clock.now(), reason=str(body.method),
        details={"certification_id": out.id, "certified_on": out.certified_on.isoformat(),
                 "resumed": out.resumed is not None},
    )
    return out


@router.post(
    "/persons/{person_id:id}/suspensions", response_model=SuspensionOut, status_code=201,
    summary="Suspend a pension for a reason such as imprisonment (staff operator, audited)",
)
async def suspend(
    clock: ClockDep, session: DbSession, principal: StaffOperator, person_id: PersonIdPath, body: SuspensionIn,
) -> SuspensionOut:
    p = await cert.pensioner_by_person_id(session=session, person_id=person_id, lock=True)
    return await cert.staff_suspend(
        session=session, clock=clock, pensioner=p, actor=principal, reason=body.reason,
        detail=body.detail, from_month=body.from_month,
    )


@router.post("/sweeps", response_model=SweepOut, summary="Run the certification date sweep now (staff operator)")
async def run_sweep(clock: ClockDep, session: DbSession, principal: StaffOperator) -> SweepOut:
    return await cert.sweep(session=session, clock=clock)


# ---- employer annual declaration -------------------------------------------------------


@router.get(
    "/employers/{credit_code}/annual-declarations/{year}/roster", response_model=RosterPage,
    summary="The registered employees of the wage year: JSON (masked ids, paginated), ?format=csv or ?format=xlsx",
    responses={200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}}, **_EMPLOYER_404},
)
async def roster(
    # DbWriteSession: the CSV and xlsx exports are audited.
    clock: ClockDep, session: DbWriteSession, principal: EmployerPrincipal, credit_code: CreditCodePath, year: YearPath,
    format: Annotated[str, Query(pattern="^(json|csv|xlsx)$")] = "json",
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Any:
    """The exports hold full id numbers (audited) and escape every cell that starts like a formula
    (= + - @): fill the last column and PUT the file back as the declaration."""
    check_own_unit(principal, credit_code)
    emp = await decl.get_employer(session=session, credit_code=credit_code)
    if format in ("csv", "xlsx"):
        if format == "csv":
            body = await roster_svc.roster_csv(session=session, credit_code=emp.credit_code, year=year)
            media_type = "text/csv; charset=utf-8"
        else:
            body = await sheets.roster_xlsx(session=session, credit_code=emp.credit_code, year=year)
            media_type = XLSX_MEDIA_TYPE
        # The export holds full id numbers: who took it, and when, stays on record.
        record_audit(
            session, actor=principal, action=f"roster.export_{format}", target_type="employer",
            target_id=emp.credit_code, at=clock.now(), details={"year": year},
        )
        return Response(
            body, media_type=media_type,
            headers={
                "Content-Disposition": f'attachment; filename="roster-{emp.credit_code}-{year}.{format}"',
                "Cache-Control": "no-store",
            },
        )
    return await roster_svc.roster_page(session=session, credit_code=emp.credit_code, year=year, limit=limit, cursor=cursor)


_DECLARATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DeclarationLinesIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {
                        "type": "string", "format": "binary",
                        "description": ".xlsx or CSV (UTF-8, GB18030): id_number, name, and avg_monthly_wage_fen or "
                                       "the wage in yuan with two decimals under a header that says so "
                                       "(月平均工资(元), avg_monthly_wage_yuan); the roster export filled in works as is",
                    }},
                },
            },
        },
    },
}


async def _json_lines(request: Request) -> DeclarationLinesIn:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "input": {}}]
        ) from None
    if data is None:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return DeclarationLinesIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        ) from None


@router.put(
    "/employers/{credit_code}/annual-declarations/{year}", response_model=DeclarationCheckOut,
    summary="Declare last year's average monthly wages (JSON lines or a spreadsheet); answers per-line errors "
            "and the differences",
    openapi_extra=_DECLARATION_BODY,
    responses={
        **_EMPLOYER_404,
        413: {"description": "file_too_large (20 MB), spreadsheet_too_many_rows (100,000)"},
        415: {"description": "file_type_unsupported"},
        422: {"description": "file_missing, spreadsheet_unreadable, spreadsheet_empty, spreadsheet_header_invalid, "
                             "validation_failed"},
    },
)
async def put_declaration(
    request: Request, clock: ClockDep, session: DbSession, principal: EmployerPrincipal, credit_code: CreditCodePath, year: YearPath,
) -> Any:
    """A JSON body `{"lines": [...]}`, or a multipart `file` (.xlsx or CSV); a spreadsheet's errors carry its row
    number (`line`) and column letter."""
    check_own_unit(principal, credit_code)
    numbers = columns = None
    if is_multipart(request):
        upload = await read_upload(request)
        lines, numbers, columns = sheets.read_lines(upload.data)
    else:
        lines = (await _json_lines(request)).lines
    emp = await decl.get_employer(session=session, credit_code=credit_code)
    return await decl.put_lines(
        session=session, clock=clock, employer=emp, year=year, raw_lines=lines,
        en=wants_english(request), numbers=numbers, columns=columns,
    )


@router.get(
    "/employers/{credit_code}/annual-declarations/{year}", response_model=DeclarationOut,
    summary="The annual declaration of a wage year (that employer, staff)",
    responses=_EMPLOYER_404,
)
async def get_declaration(
    session: DbSession, principal: EmployerOrStaff, credit_code: CreditCodePath, year: YearPath,
) -> Any:
    check_own_unit(principal, credit_code)
    return decl.declaration_out(await decl.find_declaration(session=session, credit_code=credit_code, year=year))


@router.post(
    "/employers/{credit_code}/annual-declarations/{year}/submit", response_model=DeclarationOut,
    summary="Submit the annual declaration for review",
    responses=_EMPLOYER_404,
)
async def submit_declaration(
    clock: ClockDep, session: DbSession, principal: EmployerPrincipal, credit_code: CreditCodePath, year: YearPath,
) -> DeclarationOut:
    check_own_unit(principal, credit_code)
    emp = await decl.get_employer(session=session, credit_code=credit_code)
    return await decl.submit(session=session, clock=clock, employer=emp, year=year, actor=principal)


@router.get(
    "/employers/{credit_code}/annual-declarations/{year}/receipt",
    summary="The declaration receipt as a PDF in Chinese", response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the receipt (PDF)"}, **_EMPLOYER_404},
)
async def receipt(
    request: Request, session: DbSession, principal: EmployerPrincipal, credit_code: CreditCodePath, year: YearPath,
) -> Response:
    check_own_unit(principal, credit_code)
    emp = await decl.get_employer(session=session, credit_code=credit_code)
    d = await decl.find_declaration(session=session, credit_code=credit_code, year=year)
    pdf = render_receipt(declaration=d, employer=emp, font_file=request.app.state.settings.receipt_font_file)
    return Response(
        pdf, media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="annual-declaration-{credit_code}-{year}.pdf"'},
    )


@router.get(
    "/annual-declarations", response_model=DeclarationPage,
    summary="Annual declarations for staff: the reviewer's queue with ?status=submitted (staff reviewer)",
)
async def staff_list_declarations(
    session: DbSession, principal: StaffReviewer,
    status: Annotated[DeclarationStatus | None, Query()] = None,
    year: Annotated[Annotated[AsciiInt, Field(ge=2000, le=2100)] | None, Query()] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Any:
    return await decl.list_declarations(session=session, status=status, year=year, limit=limit, cursor=cursor)


@router.get(
    "/annual-declarations/{declaration_id:id}/lines", response_model=DeclaredLinePage,
    summary="A declaration's lines, masked ids (staff reviewer)",
)
async def staff_declaration_lines(
    session: DbSession, principal: StaffReviewer, declaration_id: DeclIdPath,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Any:
    return await decl.declared_lines(session=session, declaration_id=declaration_id, limit=limit, cursor=cursor)


@router.get(
    "/annual-declarations/{declaration_id:id}", response_model=DeclarationOut,
    summary="An annual declaration by id (staff reviewer)",
)
async def staff_get_declaration(session: DbSession, principal: StaffReviewer, declaration_id: DeclIdPath) -> Any:
    return decl.declaration_out(await decl.get_declaration(session=session, declaration_id=declaration_id))


@router.post(
    "/annual-declarations/{declaration_id:id}/decision", response_model=DeclarationOut,
    summary="Approve or return a submitted annual declaration, with reasons (staff reviewer, audited)",
)
async def decide(
    clock: ClockDep, session: DbSession, principal: StaffReviewer, declaration_id: DeclIdPath, body: DecisionIn,
) -> DeclarationOut:
    return await decl.decide(
        session=session, clock=clock, declaration_id=declaration_id, actor=principal,
        decision=body.decision, reasons=body.reasons,
    )


@router.post(
    "/annual-declarations/overdue", response_model=OverdueOut,
    summary="Flag employers past the deadline and apply 110% of their previous bases (staff operator, audited)",
)
async def overdue(clock: ClockDep, session: DbSession, principal: StaffOperator, body: OverdueIn | None = None) -> OverdueOut:
    return await overdue_svc.assess_overdue(
        session=session, clock=clock, actor=principal, year=body.year if body else None,
    )
