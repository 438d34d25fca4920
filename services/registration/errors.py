"""Refusals of the registration service, each with its stable code."""

from __future__ import annotations

from services.common.errors import DomainError


class EmployerNotFound(DomainError):
    status = 404
    code = "employer_not_found"
    title_zh = "单位尚未登记"
    title_en = "Employer not registered"


class EmployerAlreadyRegistered(DomainError):
    status = 409
    code = "employer_already_registered"
    title_zh = "该单位已登记"
    title_en = "Employer already registered"


class PersonNotFound(DomainError):
    status = 404
    code = "person_not_found"
    title_zh = "参保人不存在"
    title_en = "Person not found"


class EnrolmentNotFound(DomainError):
    status = 404
    code = "enrolment_not_found"
    title_zh = "参保登记不存在"
    title_en = "Enrolment not found"


class EmploymentNotFound(DomainError):
    status = 404
    code = "employment_not_found"
    title_zh = "该人员不在本单位参保"
    title_en = "No employment of this person at this employer"


class EnrolmentConflict(DomainError):
    status = 409
    code = "enrolment_conflict"
    title_zh = "已有未终止的参保登记"
    title_en = "The person already holds an open enrolment"


class EmployeeAlreadyEnrolled(DomainError):
    status = 409
    code = "employee_already_enrolled"
    title_zh = "该人员已在本单位参保"
    title_en = "The person is already enrolled by this employer"


class EnrolmentAlreadyEnded(DomainError):
    status = 409
    code = "enrolment_already_ended"
    title_zh = "该参保登记已终止"
    title_en = "The enrolment has already ended"


class EnrolmentNotSelf(DomainError):
    status = 409
    code = "enrolment_not_self"
    title_zh = "职工参保由单位办理减员，个人不能终止"
    title_en = "An employee enrolment is ended by the employer's separation, not by the person"


class PersonIsPensioner(DomainError):
    status = 409
    code = "person_is_pensioner"
    title_zh = "该人员已领取养老金"
    title_en = "The person is a pensioner"


class NameMismatch(DomainError):
    status = 422
    code = "name_mismatch"
    title_zh = "姓名与身份证号码不一致"
    title_en = "The name does not match the id number"


class HireDateTooFarAhead(DomainError):
    status = 422
    code = "hire_date_too_far_ahead"
    title_zh = "入职日期最多可提前30天登记"
    title_en = "The hire date may be at most 30 days ahead"


class UnderWorkingAge(DomainError):
    status = 422
    code = "under_working_age"
    title_zh = "未满16周岁，不能登记为职工"
    title_en = "Under 16 at the hire date: cannot be enrolled as an employee"


class SeparationBeforeHire(DomainError):
    status = 422
    code = "separation_before_hire"
    title_zh = "离职日期不能早于入职日期"
    title_en = "The separation date is before the hire date"


class SeparationTooFarAhead(DomainError):
    status = 422
    code = "separation_too_far_ahead"
    title_zh = "离职日期最多可提前30天登记"
    title_en = "The separation date may be at most 30 days ahead"


class InsuranceNotAllowed(DomainError):
    status = 422
    code = "insurance_type_not_allowed"
    title_zh = "该参保类别不能参加所选险种"
    title_en = "Insurance type not allowed for this category"


class StartMonthOutOfRange(DomainError):
    status = 422
    code = "start_month_out_of_range"
    title_zh = "起始月份只能是本月或本年度之前的月份"
    title_en = "The start month must be this month or an earlier month of this calendar year"


class StartMonthOverlaps(DomainError):
    status = 422
    code = "start_month_overlaps"
    title_zh = "起始月份与已有参保月份重叠"
    title_en = "The start month overlaps months already covered by another enrolment"


class EndMonthOutOfRange(DomainError):
    status = 422
    code = "end_month_out_of_range"
    title_zh = "终止月份不在允许范围内"
    title_en = "The end month is outside the allowed range"


class HouseholdRegionRequired(DomainError):
    status = 422
    code = "household_region_required"
    title_zh = "灵活就业参保需填写户籍所在地"
    title_en = "Flexible enrolment requires the household region code"


class NonLocalNotAllowed(DomainError):
    status = 422
    code = "non_local_household_not_allowed"
    title_zh = "该地区灵活就业人员须在户籍所在地参保"
    title_en = "This region requires a local household registration for flexible enrolment"


class PensionFromDateInvalid(DomainError):
    status = 422
    code = "pension_from_date_invalid"
    title_zh = "养老金起始日期无效"
    title_en = "Invalid pension from-date"


class PensionRegionUnknown(DomainError):
    status = 422
    code = "pension_region_required"
    title_zh = "无法确定养老金发放地区，请填写 region_code"
    title_en = "The pension region cannot be derived: give region_code"


class RegionalRuleNotFound(DomainError):
    status = 404
    code = "regional_rule_not_found"
    title_zh = "该地区没有生效的参保规则"
    title_en = "No regional rule in force"


class RealnameIdentityInvalid(DomainError):
    status = 403
    code = "realname_identity_invalid"
    title_zh = "实名身份信息（证件号码、姓名）缺失或无效，请重新实名认证"
    title_en = "The real-name identity (id number, name) is missing or invalid"


class EmployeeImportNotFound(DomainError):
    status = 404
    code = "employee_import_not_found"
    title_zh = "导入记录不存在"
    title_en = "Employee import not found"
