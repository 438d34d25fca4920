"""Refusals of the contribution service (stable codes, bilingual titles)."""

from services.common.errors import DomainError


class PolicyNotFound(DomainError):
    status = 404
    code = "policy_not_found"
    title_zh = "该地区该月份没有缴费政策"
    title_en = "No contribution policy for this region and month"


class PolicyOverlap(DomainError):
    status = 409
    code = "policy_overlap"
    title_zh = "与该地区已有的政策期间重叠"
    title_en = "The period overlaps another policy of this region"


class PolicyPeriodInvalid(DomainError):
    status = 422
    code = "policy_period_invalid"
    title_zh = "政策期间无效"
    title_en = "Invalid policy period"


class BaseOutsideBand(DomainError):
    status = 422
    code = "base_outside_band"
    title_zh = "缴费基数不在上下限之间"
    title_en = "The contribution base is outside the band"


class BaseNotOffered(DomainError):
    status = 422
    code = "base_not_offered"
    title_zh = "该地区灵活就业人员只能选择规定的缴费档次"
    title_en = "The region offers flexible workers fixed bases only"


class PaymentFrequencyMismatch(DomainError):
    status = 422
    code = "payment_frequency_mismatch"
    title_zh = "申报月份不符合该地区允许的缴费周期"
    title_en = "The months declared together do not fit a payment frequency the region allows"


class PersonIsPensioner(DomainError):
    status = 409
    code = "person_is_pensioner"
    title_zh = "已领取养老金，无需测算"
    title_en = "The person already receives a pension"


class GradeNotOffered(DomainError):
    status = 422
    code = "grade_not_offered"
    title_zh = "该地区没有此缴费档次"
    title_en = "This grade is not offered in the region"


class BackPaymentOutsideWindow(DomainError):
    status = 422
    code = "back_payment_outside_window"
    title_zh = "补缴月份超出允许的补缴期限"
    title_en = "A back-payment month is outside the allowed window"


class MonthsTooFarAhead(DomainError):
    status = 422
    code = "months_too_far_ahead"
    title_zh = "最多可预缴当前月份之后12个月"
    title_en = "At most 12 months after the current month may be paid in advance"


class CategoryNotAllowed(DomainError):
    status = 422
    code = "category_not_allowed"
    title_zh = "此处不能申报该参保类别"
    title_en = "This category cannot be declared here"


class NotEnrolled(DomainError):
    status = 422
    code = "not_enrolled"
    title_zh = "申报月份没有对应的参保登记"
    title_en = "No enrolment of this category and region covers every month"
    read_model = "registration"


class MonthAlreadyDeclared(DomainError):
    status = 409
    code = "month_already_declared"
    title_zh = "所选月份已缴费或已在其他申报中"
    title_en = "A month is already paid or held by another declaration"


class DeclarationNotFound(DomainError):
    status = 404
    code = "declaration_not_found"
    title_zh = "申报不存在"
    title_en = "Declaration not found"


class DeclarationStateConflict(DomainError):
    status = 409
    code = "declaration_state_conflict"
    title_zh = "申报当前状态不允许此操作"
    title_en = "The declaration's status does not allow this"


class DeclarationAlreadyPaid(DomainError):
    status = 409
    code = "declaration_already_paid"
    title_zh = "申报已由另一笔支付缴清"
    title_en = "The declaration was already paid by another payment"


class EmployerNotRegistered(DomainError):
    status = 404
    code = "employer_not_registered"
    title_zh = "单位尚未办理社会保险登记"
    title_en = "The employer is not registered for social insurance"
    read_model = "registration"


class NoActiveEmployees(DomainError):
    status = 422
    code = "no_active_employees"
    title_zh = "该月份没有在职参保职工"
    title_en = "No active employee for this month"
    read_model = "registration"


class MonthNotDeclarable(DomainError):
    status = 422
    code = "month_not_declarable"
    title_zh = "不能申报该月份"
    title_en = "This month cannot be declared"


class NoPreviousDeclaration(DomainError):
    status = 422
    code = "no_previous_declaration"
    title_zh = "该单位上月没有申报，无法按110%核定"
    title_en = "No declaration of the previous month to assess from"


class AgencyNotAuthorized(DomainError):
    status = 403
    code = "agency_not_authorized"
    title_zh = "该人员未授权本机构代办或授权已失效"
    title_en = "No authorization in force from this person"


class AuthorizationInvalid(DomainError):
    status = 422
    code = "authorization_invalid"
    title_zh = "授权期限无效"
    title_en = "Invalid authorization period"


class AuthorizationNotFound(DomainError):
    status = 404
    code = "authorization_not_found"
    title_zh = "授权不存在"
    title_en = "Authorization not found"


class PaymentInProgress(DomainError):
    status = 409
    code = "payment_in_progress"
    title_zh = "该申报有正在进行的支付，请完成或等待其关闭后再撤销"
    title_en = "A payment of this declaration is in progress"


class DeclarationNotFoundUnlessBound(DeclarationNotFound):
    """Someone else's declaration: 404 `declaration_not_found` as before, after catching up on card's
    family bindings (the caller may have just been bound to the declaration's owner)."""

    read_model = "card"


class FamilyBindingNotFound(DomainError):
    status = 404
    code = "family_binding_not_found"
    title_zh = "未找到该亲情绑定"
    title_en = "Family binding not found"
    read_model = "card"
