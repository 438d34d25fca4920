"""Refusals of the review service, each with its stable code."""

from __future__ import annotations

from services.common.errors import DomainError, register_validation_code

register_validation_code("evidence_required", "请填写认证依据（走访或数据比对记录）")
register_validation_code("reasons_required", "退回时须写明理由")
register_validation_code("declaration_deadline_invalid", "截止日期格式应为 MM-DD")


class EmployerNotFound(DomainError):
    status = 404
    code = "employer_not_found"
    title_zh = "单位尚未登记"
    title_en = "Employer not registered"
    read_model = "registration"


class PensionerNotFound(DomainError):
    status = 404
    code = "pensioner_not_found"
    title_zh = "未查询到养老金领取资格"
    title_en = "No pension award found for this person"
    read_model = "registration"


class RuleNotFound(DomainError):
    status = 404
    code = "review_rule_not_found"
    title_zh = "该地区没有适用的年审规则"
    title_en = "No review rule in force for this region"


class AlreadySuspended(DomainError):
    status = 409
    code = "pension_already_suspended"
    title_zh = "养老金已处于暂停发放状态"
    title_en = "The pension is already suspended"


class DeclarationNotFound(DomainError):
    status = 404
    code = "annual_declaration_not_found"
    title_zh = "年度申报不存在"
    title_en = "Annual declaration not found"


class YearNotDeclarable(DomainError):
    status = 422
    code = "year_not_declarable"
    title_zh = "只能申报上一年度及以前的工资"
    title_en = "Only a past year's wages can be declared"


class DeclarationNotEditable(DomainError):
    status = 409
    code = "annual_declaration_not_editable"
    title_zh = "年度申报已提交或已审核，不能修改"
    title_en = "The annual declaration is submitted or decided and cannot be changed"


class DeclarationIncomplete(DomainError):
    status = 422
    code = "annual_declaration_incomplete"
    title_zh = "年度申报尚有错误或没有申报明细，不能提交"
    title_en = "The annual declaration has invalid lines or no lines and cannot be submitted"


class DeclarationNotSubmitted(DomainError):
    status = 409
    code = "annual_declaration_not_submitted"
    title_zh = "年度申报不在待审核状态"
    title_en = "The annual declaration is not awaiting a decision"


class CertifiedOnInvalid(DomainError):
    status = 422
    code = "certified_on_invalid"
    title_zh = "认证日期应在领取养老金之后且不晚于今天"
    title_en = "The certification date must fall between the pension award and today"


class SuspensionMonthInvalid(DomainError):
    status = 422
    code = "suspension_month_invalid"
    title_zh = "暂停起始月不在允许范围内"
    title_en = "The first suspended month is out of range"
