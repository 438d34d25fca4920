"""Contribution HTTP routes: policies, quotes, declarations, employers, agencies, records."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from services.common.clock import ClockDep
from services.common.db import DbSession
from services.common.errors import wants_english
from services.common.events import ReadModelRoute
from services.common.identifiers import AsciiInt, Month, RegionCode, id_number_info
from services.common.pagination import CursorQuery, Page
from services.common.paths import CreditCodePath, IdPath
from services.common.pii import id_hash
from services.common.principal import Principal, PrincipalKind, check_own_unit, require
from services.contribution import records
from services.contribution.agencies import service as agencies
from services.contribution.declarations import creating, lifecycle, reading
from services.contribution.employers import service as employers
from services.contribution.models import Declaration
from services.contribution.payments.reads import payment_summaries
from services.contribution.pension import estimate as pension
from services.contribution.pension.rules import FemalePost, half_up
from services.contribution.policies import service as policies
from services.contribution.policies.quotes import price, quote_out
from services.contribution.schemas import (
    AgencyAuthorizationIn,
    AgencyAuthorizationOut,
    AgencyAuthorizationPage,
    AgencyDeclarationIn,
    AssessmentIn,
    AssumptionOut,
    DeclarationIn,
    DeclarationOut,
    DeclarationPage,
    EmployerDeclarationIn,
    PensionEstimateOut,
    PensionFiguresOut,
    PolicyIn,
    PolicyOut,
    QuoteIn,
    QuoteOut,
    RecordsOut,
    RetirementOut,
)

router = APIRouter(prefix="/contribution/v1", tags=["contribution"], route_class=ReadModelRoute)

RegionPath = Annotated[RegionCode, Path(examples=["110105"])]
MonthPath = Annotated[Month, Path(examples=["2025-07"])]
CreditPath = CreditCodePath
Limit = Annotated[AsciiInt, Query(ge=1, le=200)]
Cursor = CursorQuery

Citizen1 = Annotated[Principal, Depends(require("citizen", min_level=1))]
Citizen2 = Annotated[Principal, Depends(require("citizen", min_level=2))]
QuoteCaller = Annotated[Principal, Depends(require("citizen", "agency", min_level=1))]
Employer = Annotated[Principal, Depends(require("employer"))]
EmployerOrStaff = Annotated[Principal, Depends(require("employer", "staff"))]
Operator = Annotated[Principal, Depends(require("staff", roles=["operator"]))]
Admin = Annotated[Principal, Depends(require("staff", roles=["admin"]))]
Agency = Annotated[Principal, Depends(require("agency"))]

_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no principal"}, 403: {"description": "principal kind, level or role not allowed"},
    422: {"description": "invalid input (problem+json with a stable code)"},
}


async def _view(session: DbSession, decl: Declaration) -> DeclarationOut:
    """A declaration's answer, with its payments."""
    return await reading.declaration_view(session=session, declaration=decl, payments_of=payment_summaries)


def _ttl(request: Request) -> timedelta:
    return timedelta(minutes=request.app.state.settings.declaration_ttl_minutes)


# ---- policies -----------------------------------------------------------------------


@router.get("/policies/{region_code}", response_model=PolicyOut, responses={404: {"description": "policy_not_found"}},
            summary="The policy in force (region, else city, else province)")
async def get_policy(
    session: DbSession, clock: ClockDep, region_code: RegionPath,
    on: Annotated[Month | None, Query(description="YYYY-MM; default this month")] = None,
) -> PolicyOut:
    month = on or clock.current_month()
    return policies.policy_out(await policies.policy_in_force(session=session, region_code=region_code, month=month))


@router.get("/policies/{region_code}/versions", response_model=Page[PolicyOut],
            summary="Every version of a region's policies, live and replaced (history)")
async def policy_versions(session: DbSession, region_code: RegionPath, limit: Limit = 50, cursor: Cursor = None) -> Page[PolicyOut]:
    rows, nxt = await policies.policy_history(session=session, region_code=region_code, limit=limit, cursor=cursor)
    return Page[PolicyOut](items=[policies.policy_out(p) for p in rows], next_cursor=nxt)


@router.put("/policies/{region_code}/{effective_from:month}", response_model=PolicyOut, status_code=200,
            responses={201: {"model": PolicyOut, "description": "added"}, 409: {"description": "policy_overlap"}, **_REFUSALS},
            summary="Add (201) or replace (200) a dated policy (staff admin, audited)")
async def put_policy(
    session: DbSession, clock: ClockDep, principal: Admin, region_code: RegionPath, effective_from: MonthPath,
    body: PolicyIn,
) -> JSONResponse:
    policy, added = await policies.put_policy(
        session=session, region_code=region_code, effective_from=effective_from, body=body, actor=principal,
        now=clock.now(),
    )
    return JSONResponse(policies.policy_out(policy).model_dump(mode="json"), status_code=201 if added else 200)


# ---- quotes -----------------------------------------------------------------------------


@router.post("/quotes", response_model=QuoteOut, responses=_REFUSALS, summary="Price months at a base or a grade (nothing saved)")
async def create_quote(session: DbSession, clock: ClockDep, principal: QuoteCaller, body: QuoteIn) -> QuoteOut:
    del principal  # who may ask for a quote
    priced = await price(session=session, body=body, today=clock.today(), current_month=clock.current_month())
    return quote_out(priced)


# ---- citizen declarations ---------------------------------------------------------------


@router.post("/me/declarations", response_model=DeclarationOut, status_code=201,
             responses={409: {"description": "month_already_declared"}, **_REFUSALS},
             summary="Add a declaration (flexible: base and months; resident: grade and year)")
async def create_my_declaration(
    request: Request, session: DbSession, clock: ClockDep, principal: Citizen2, body: DeclarationIn,
) -> DeclarationOut:
    decl = await creating.create_citizen_declaration(
        session=session, body=body, principal=principal, now=clock.now(), today=clock.today(),
        current_month=clock.current_month(), ttl=_ttl(request),
    )
    return await _view(session, decl)


@router.get("/me/declarations", response_model=DeclarationPage, summary="My declarations, newest first")
async def list_my_declarations(session: DbSession, principal: Citizen1, limit: Limit = 50, cursor: Cursor = None) -> DeclarationPage:
    rows, nxt = await reading.list_person_declarations(session=session, principal=principal, limit=limit, cursor=cursor)
    return DeclarationPage(items=[reading.list_item(d) for d in rows], next_cursor=nxt)


@router.get("/me/declarations/{declaration_id:id}", response_model=DeclarationOut, responses={404: {"description": "not mine"}})
async def get_my_declaration(session: DbSession, principal: Citizen1, declaration_id: IdPath) -> DeclarationOut:
    decl = await reading.get_person_declaration(session=session, declaration_id=declaration_id, principal=principal)
    return await _view(session, decl)


@router.post("/me/declarations/{declaration_id:id}/confirm", response_model=DeclarationOut,
             responses={404: {"description": "not mine"}, 409: {"description": "declaration_state_conflict"}})
async def confirm_my_declaration(
    request: Request, session: DbSession, clock: ClockDep, principal: Citizen2, declaration_id: IdPath,
) -> DeclarationOut:
    decl = await reading.get_person_declaration(session=session, declaration_id=declaration_id, principal=principal)
    decl = await lifecycle.confirm_declaration(session=session, declaration=decl, now=clock.now(), ttl=_ttl(request))
    return await _view(session, decl)


@router.post("/me/declarations/{declaration_id:id}/cancel", response_model=DeclarationOut,
             responses={404: {"description": "not mine"}, 409: {"description": "declaration_state_conflict"}},
             summary="Cancel an unpaid declaration; its months are free again")
async def cancel_my_declaration(
    session: DbSession, clock: ClockDep, principal: Citizen2, declaration_id: IdPath,
) -> DeclarationOut:
    decl = await reading.get_person_declaration(session=session, declaration_id=declaration_id, principal=principal)
    decl = await lifecycle.cancel_declaration(
        session=session, declaration=decl, now=clock.now(), payments_of=payment_summaries
    )
    return await _view(session, decl)


# ---- employers ------------------------------------------------------------------------


@router.post("/employers/{credit_code}/declarations", response_model=DeclarationOut, status_code=201,
             responses={409: {"description": "month_already_declared"}, **_REFUSALS},
             summary="The unit's monthly declaration (late fee after the deadline day)")
async def create_employer_declaration(
    request: Request, session: DbSession, clock: ClockDep, principal: Employer, credit_code: CreditPath,
    body: EmployerDeclarationIn,
) -> DeclarationOut:
    check_own_unit(principal, credit_code)
    decl = await employers.create_employer_declaration(
        session=session, credit_code=credit_code, body=body, principal=principal, now=clock.now(),
        today=clock.today(), current_month=clock.current_month(), ttl=_ttl(request),
    )
    return await _view(session, decl)


@router.get("/employers/{credit_code}/declarations", response_model=DeclarationPage, responses=_REFUSALS,
            summary="The unit's declarations and assessments, newest first")
async def list_employer_declarations(
    session: DbSession, principal: EmployerOrStaff, credit_code: CreditPath, limit: Limit = 50, cursor: Cursor = None,
) -> DeclarationPage:
    if principal.kind == PrincipalKind.employer:
        check_own_unit(principal, credit_code)
    rows, nxt = await reading.list_employer_declarations(session=session, credit_code=credit_code, limit=limit, cursor=cursor)
    return DeclarationPage(items=[reading.list_item(d) for d in rows], next_cursor=nxt)


@router.get("/employers/{credit_code}/declarations/{declaration_id:id}", response_model=DeclarationOut,
            responses={404: {"description": "not this unit's"}, **_REFUSALS})
async def get_employer_declaration(
    session: DbSession, principal: EmployerOrStaff, credit_code: CreditPath, declaration_id: IdPath,
) -> DeclarationOut:
    if principal.kind == PrincipalKind.employer:
        check_own_unit(principal, credit_code)
    decl = await employers.get_employer_declaration(session=session, credit_code=credit_code, declaration_id=declaration_id)
    return await _view(session, decl)


@router.post("/employers/{credit_code}/assessments", response_model=DeclarationOut, status_code=201,
             responses={404: {"description": "employer_not_registered"}, 409: {"description": "month_already_declared"},
                        **_REFUSALS},
             summary="Assess an undeclared month at 110% of the previous one (art. 62; audited)")
async def assess_employer(
    session: DbSession, clock: ClockDep, principal: Operator, credit_code: CreditPath, body: AssessmentIn,
) -> DeclarationOut:
    decl = await employers.assess_employer(
        session=session, credit_code=credit_code, body=body, principal=principal, now=clock.now(), today=clock.today(),
    )
    return await _view(session, decl)


# ---- agencies -----------------------------------------------------------------------


@router.post("/me/agency-authorizations", response_model=AgencyAuthorizationOut, status_code=201, responses=_REFUSALS,
             summary="Let an agency declare and pay for me until a date")
async def authorize_agency(
    session: DbSession, clock: ClockDep, principal: Citizen2, body: AgencyAuthorizationIn,
) -> AgencyAuthorizationOut:
    row = await agencies.authorize_agency(session=session, principal=principal, body=body, now=clock.now(),
                                         today=clock.today())
    return agencies.authorization_out(row, clock.today())


@router.get("/me/agency-authorizations", response_model=AgencyAuthorizationPage, summary="My agency authorizations")
async def list_authorizations(session: DbSession, clock: ClockDep, principal: Citizen1) -> AgencyAuthorizationPage:
    today = clock.today()
    rows = await agencies.list_authorizations(session=session, principal=principal)
    return AgencyAuthorizationPage(items=[agencies.authorization_out(r, today) for r in rows])


@router.delete("/me/agency-authorizations/{authorization_id:id}", status_code=204, response_class=Response,
               responses={404: {"description": "not mine"}})
async def revoke_authorization(
    session: DbSession, clock: ClockDep, principal: Citizen1, authorization_id: IdPath,
) -> Response:
    await agencies.revoke_authorization(session=session, principal=principal, authorization_id=authorization_id,
                                       now=clock.now())
    return Response(status_code=204)


@router.post("/agency/declarations", response_model=DeclarationOut, status_code=201,
             responses={403: {"description": "agency_not_authorized"}, 409: {"description": "month_already_declared"}},
             summary="Declare for a person whose authorization is in force (awaits payment at once)")
async def create_agency_declaration(
    request: Request, session: DbSession, clock: ClockDep, principal: Agency, body: AgencyDeclarationIn,
) -> DeclarationOut:
    quote = QuoteIn.model_validate(body.model_dump(exclude={"id_number"}))
    decl = await agencies.create_agency_declaration(
        session=session, body=quote, id_number=body.id_number, principal=principal, now=clock.now(),
        today=clock.today(), current_month=clock.current_month(), ttl=_ttl(request),
    )
    return await _view(session, decl)


@router.get("/agency/declarations/{declaration_id:id}", response_model=DeclarationOut, responses={404: {"description": "not ours"}})
async def get_agency_declaration(session: DbSession, principal: Agency, declaration_id: IdPath) -> DeclarationOut:
    decl = await agencies.get_agency_declaration(session=session, declaration_id=declaration_id, principal=principal)
    return await _view(session, decl)


# ---- records --------------------------------------------------------------------------


@router.get("/me/records", response_model=RecordsOut, summary="My paid months per insurance, the gaps, months to a pension")
async def my_records(
    session: DbSession, clock: ClockDep, principal: Citizen1,
    year: Annotated[Annotated[AsciiInt, Field(ge=1990, le=2100)] | None, Query()] = None,
) -> RecordsOut:
    assert principal.id_number
    return await records.records_of(
        session=session, person_key=id_hash(principal.id_number), year=year or clock.today().year,
        current_month=clock.current_month(),
    )



@router.get("/me/pension-estimate", response_model=PensionEstimateOut,
            responses={409: {"description": "person_is_pensioner"}, 422: {"description": "not_enrolled"}},
            summary="My statutory retirement month, minimum years, months paid and needed, estimated pension")
async def my_pension_estimate(
    request: Request, session: DbSession, clock: ClockDep, principal: Citizen2,
    female_post: Annotated[FemalePost | None, Query(
        description="women only: worker (original age 50) or cadre (55); default from the enrolment")] = None,
) -> PensionEstimateOut:
    """养老金测算: an estimate, every figure with what it assumed (see `assumptions`)."""
    assert principal.id_number
    info = id_number_info(principal.id_number)
    est = await pension.estimate(
        session=session, person_key=id_hash(principal.id_number), birth=info.birth_date, sex=info.sex,
        current_month=clock.current_month(), female_post=female_post,
    )
    en = wants_english(request)
    r = est.retirement
    total = est.months_paid + est.months_projected
    employee_like = est.category != "resident"
    return PensionEstimateOut(
        category=est.category, region_code=est.region_code, policy_region_code=est.policy.region_code,
        birth_month=est.birth_month, sex=est.sex,
        retirement=RetirementOut(
            basis=est.basis, original_age_years=r.original_age_years, original_month=r.original_month,
            delay_months=r.delay_months, age_years=r.age_years, age_extra_months=r.age_months % 12, month=r.month,
        ),
        minimum_months_required=est.required_months, months_paid=est.months_paid,
        months_needed=max(est.required_months - est.months_paid, 0), months_projected=est.months_projected,
        eligible_at_retirement=total >= est.required_months,
        estimate=PensionFiguresOut(
            average_wage_fen=est.policy.avg_wage_fen if employee_like else None,
            average_index=_four_places(est.average_index) if est.average_index is not None else None,
            contribution_months=total, basic_pension_fen=est.basic_fen, account_balance_fen=est.balance_fen,
            divisor=est.divisor, account_pension_fen=est.account_fen, monthly_pension_fen=est.monthly_fen,
        ),
        assumptions=[AssumptionOut(code=a.code, value=a.value, text=a.en if en else a.zh) for a in est.assumptions],
    )


def _four_places(value: Any) -> str:
    """A Fraction as a decimal string with 4 places, half up (no float)."""
    scaled = half_up(value * 10000)
    return f"{scaled // 10000}.{scaled % 10000:04d}"
