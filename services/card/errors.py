"""The card service's refusals (problem+json codes)."""

from __future__ import annotations

from services.common.errors import DomainError


class RecordedRefusal(DomainError):
    """A refusal whose bookkeeping (failed tries, lockouts, audit) is committed with it."""

    keeps_changes = True


class CardNotFound(DomainError):
    status = 404
    code = "card_not_found"
    title_zh = "未找到社保卡"
    title_en = "Card not found"


class EcardNotFound(DomainError):
    status = 404
    code = "ecard_not_found"
    title_zh = "尚未领取电子社保卡"
    title_en = "No electronic card for this platform"


class CardStateConflict(DomainError):
    status = 409
    code = "card_state_conflict"
    title_zh = "社保卡当前状态不允许此操作"
    title_en = "The card's current state does not allow this"


class EnrolmentRequired(DomainError):
    status = 409
    code = "enrolment_required"
    title_zh = "申领社保卡需要有效的参保登记"
    title_en = "Applying for a card needs an open enrolment (or a pension)"
    read_model = "registration"


class CardAlreadyExists(DomainError):
    status = 409
    code = "card_already_exists"
    title_zh = "已有有效的社保卡或申领记录"
    title_en = "A live card or application already exists"


class CardNoTaken(DomainError):
    status = 409
    code = "card_no_taken"
    title_zh = "该卡号已被使用"
    title_en = "This card number is already in use"


class IdentityMismatch(RecordedRefusal):
    status = 422
    code = "identity_mismatch"
    title_zh = "卡号、身份证号码与姓名不一致"
    title_en = "Card number, id number and name do not match"


class ActivationLocked(RecordedRefusal):
    status = 423
    code = "activation_locked"
    title_zh = "核验失败次数过多，该卡已暂停激活，请到经办窗口办理"
    title_en = "Too many mismatches: activation of this card is locked, visit a window"


class PinIncorrect(RecordedRefusal):
    status = 422
    code = "pin_incorrect"
    title_zh = "原密码不正确"
    title_en = "The PIN is incorrect"


class PinLocked(DomainError):
    status = 423
    code = "pin_locked"
    title_zh = "密码已锁定，请人脸认证后重置或到经办窗口办理"
    title_en = "The PIN is locked: reset it with a face authentication or at a window"


class PinTooWeak(DomainError):
    status = 422
    code = "pin_too_weak"
    title_zh = "新密码过于简单"
    title_en = "The new PIN is too weak"


class PlatformUnknown(DomainError):
    status = 422
    code = "platform_unknown"
    title_zh = "无法识别办理渠道平台"
    title_en = "The calling platform is unknown"


class EcardAlreadyIssued(DomainError):
    status = 409
    code = "ecard_already_issued"
    title_zh = "该平台的电子社保卡已领取"
    title_en = "The electronic card for this platform is already issued"


class QrInvalid(DomainError):
    status = 422
    code = "qr_invalid"
    title_zh = "二维码无效"
    title_en = "Invalid QR code"


class QrExpired(DomainError):
    status = 422
    code = "qr_expired"
    title_zh = "二维码已过期，请刷新"
    title_en = "The QR code has expired"


class QrAlreadyUsed(DomainError):
    status = 409
    code = "qr_already_used"
    title_zh = "二维码已被使用"
    title_en = "The QR code was already used"


class RuleExists(DomainError):
    status = 409
    code = "card_rule_exists"
    title_zh = "该地区同一生效日期的规则已存在"
    title_en = "A rule for this region and date already exists"


class RuleInPast(DomainError):
    status = 422
    code = "card_rule_effective_in_past"
    title_zh = "规则生效日期不能早于今天"
    title_en = "A rule cannot take effect before today"


class NoRule(DomainError):
    status = 409
    code = "card_rule_missing"
    title_zh = "该地区没有适用的社保卡规则"
    title_en = "No card rule applies in this region"


# ---- family service -------------------------------------------------------------------


class FamilyBindingNotFound(DomainError):
    status = 404
    code = "family_binding_not_found"
    title_zh = "未找到该亲情绑定"
    title_en = "Family binding not found"


class FamilyInvitationNotFound(DomainError):
    status = 404
    code = "family_invitation_not_found"
    title_zh = "未找到发给您的亲情绑定邀请"
    title_en = "No such family invitation addressed to you"


class FamilySelfBinding(DomainError):
    status = 422
    code = "family_self_binding"
    title_zh = "不能绑定本人"
    title_en = "You cannot bind yourself as a relative"


class FamilyMinorRelation(DomainError):
    status = 422
    code = "family_minor_relation"
    title_zh = "未满16周岁的家庭成员只能由父母以“子女”关系绑定"
    title_en = "A relative under 16 can only be bound by a parent, as a child"


class FamilyBindingExists(DomainError):
    status = 409
    code = "family_binding_exists"
    title_zh = "已绑定该家庭成员或邀请尚在等待确认"
    title_en = "This relative is already bound or the invitation is pending"


class FamilyLimitReached(DomainError):
    status = 409
    code = "family_limit_reached"
    title_zh = "最多绑定8位家庭成员（含待确认）"
    title_en = "At most 8 relatives can be bound (pending ones included)"


class FamilyBindingNotActive(DomainError):
    status = 409
    code = "family_binding_not_active"
    title_zh = "该亲情绑定尚未生效或已解除"
    title_en = "The family binding is not active"


class FamilyInvitationNotPending(DomainError):
    status = 409
    code = "family_invitation_not_pending"
    title_zh = "该邀请已处理或已撤回"
    title_en = "The invitation was already answered or withdrawn"
