"""The payment certificate: a one-page PDF in Chinese with a verification code and its QR code.

缴费凭证. The font is embedded (a TrueType CJK font: the shipped Noto Sans SC
subset, or CONTRIBUTION_CERTIFICATE_FONT_FILE), so the text renders on a
machine without Chinese fonts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from threading import Lock

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from services.common.clock import SHANGHAI
from services.common.regions import region_full_name
from services.contribution.payments.money import fen_to_display

INSURANCE_ZH = {"pension": "养老保险", "medical": "医疗保险", "unemployment": "失业保险",
                "work_injury": "工伤保险", "maternity": "生育保险"}
PAYER_ZH = {"employer": "单位", "employee": "个人", "individual": "个人", "government": "政府补贴"}
CHANNEL_ZH = {"alipay": "支付宝", "wechat": "微信支付"}
CATEGORY_ZH = {"flexible": "灵活就业人员", "resident": "城乡居民", "employee": "职工"}

_fonts: dict[Path, str] = {}
_lock = Lock()


def _has_glyphs(font: str, text: str) -> bool:
    """True when the registered TrueType font draws every character of `text`."""
    face = getattr(pdfmetrics.getFont(font), "face", None)
    char_to_glyph = getattr(face, "charToGlyph", None)
    return char_to_glyph is not None and all(ord(ch) in char_to_glyph for ch in text)


def region_text(font: str, region_code: str) -> str:
    """参保地区: the full name beside the code (北京市朝阳区（110105）), or the code alone when the
    code is no longer in the division table or the font lacks a glyph of the name."""
    name = region_full_name(region_code)
    if name is None or not _has_glyphs(font, name):
        return region_code
    return f"{name}（{region_code}）"


def _fitting_size(font: str, text: str, width: float, size: float, smallest: float = 7) -> float:
    """The font size, at most `size`, at which `text` fits `width` (a long region name beside the QR code)."""
    while size > smallest and pdfmetrics.stringWidth(text, font, size) > width:
        size -= 0.5
    return size


def _font(path: Path) -> str:
    """Register a TrueType font once per file; its reportlab name."""
    with _lock:
        if path not in _fonts:
            name = f"CertCJK{len(_fonts)}"
            pdfmetrics.registerFont(TTFont(name, str(path)))
            _fonts[path] = name
        return _fonts[path]


@dataclass(frozen=True)
class CertificateLine:
    month: str
    insurance: str
    payer: str
    base_fen: int
    rate_bp: int
    amount_fen: int


@dataclass(frozen=True)
class CertificateData:
    code: str
    verify_url: str
    holder_name: str | None
    holder_id_masked: str | None
    category: str
    region_code: str
    months: Sequence[str]
    lines: Sequence[CertificateLine]
    amount_fen: int
    channel: str
    platform_trade_no: str | None
    paid_at: datetime
    issued_at: datetime


def _rate(bp: int) -> str:
    return f"{bp / 100:.2f}%".replace(".00%", "%")


def _draw_qr(c: Canvas, data: str, x: float, y: float, size: float) -> None:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=2)
    qr.add_data(data)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    cell = size / len(matrix)
    c.setFillColorRGB(0, 0, 0)
    for r, row in enumerate(matrix):
        for col, dark in enumerate(row):
            if dark:
                c.rect(x + col * cell, y + size - (r + 1) * cell, cell, cell, stroke=0, fill=1)


def render_certificate(data: CertificateData, *, font_file: Path) -> bytes:
    """The certificate as PDF bytes."""
    font = _font(font_file)
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4, pageCompression=1)
    c.setTitle("社会保险费缴费凭证")
    c.setAuthor("社会保险经办机构")
    c.setSubject(f"verification code {data.code}")
    width, height = A4
    left, right = 20 * mm, width - 20 * mm

    def header() -> float:
        c.setFont(font, 20)
        c.drawCentredString(width / 2, height - 28 * mm, "社会保险费缴费凭证")
        c.setFont(font, 9)
        c.drawCentredString(width / 2, height - 35 * mm, "Social Insurance Contribution Payment Certificate")
        c.setLineWidth(0.8)
        c.line(left, height - 39 * mm, right, height - 39 * mm)
        return float(height - 48 * mm)

    y = header()
    paid_local = data.paid_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    months = list(data.months)
    span = "、".join(months) if len(months) <= 6 else f"{months[0]} 至 {months[-1]}（共 {len(months)} 个月）"
    fields = [
        ("缴费人", data.holder_name or "—"),
        ("证件号码", data.holder_id_masked or "—"),
        ("参保类别", CATEGORY_ZH.get(data.category, data.category)),
        ("参保地区", region_text(font, data.region_code)),
        ("缴费期间", span),
        ("缴费金额", f"￥{fen_to_display(data.amount_fen)} 元"),
        ("支付时间", f"{paid_local}（北京时间）"),
        ("支付渠道", CHANNEL_ZH.get(data.channel, data.channel)),
        ("交易号", data.platform_trade_no or "—"),
        ("凭证验证码", data.code),
    ]
    qr_size = 36 * mm
    _draw_qr(c, data.verify_url, right - qr_size, y - qr_size + 6 * mm, qr_size)
    value_width = right - qr_size - 3 * mm - (left + 28 * mm)
    for label, value in fields:
        c.setFont(font, 11)
        c.drawString(left, y, f"{label}：")
        c.setFont(font, _fitting_size(font, value, value_width, 11))
        c.drawString(left + 28 * mm, y, value)
        y -= 7.5 * mm
    c.setFont(font, 8)
    c.drawCentredString(right - qr_size / 2, y + 2 * mm, "扫码核验")

    y -= 4 * mm
    cols = [left, left + 25 * mm, left + 55 * mm, left + 80 * mm, left + 115 * mm, left + 140 * mm]
    titles = ["缴费月份", "险种", "缴费方", "缴费基数（元）", "费率", "金额（元）"]

    def table_head(y: float) -> float:
        c.setFont(font, 10)
        c.setLineWidth(0.5)
        c.line(left, y + 5 * mm, right, y + 5 * mm)
        for x, t in zip(cols, titles, strict=True):
            c.drawString(x, y, t)
        c.line(left, y - 2.5 * mm, right, y - 2.5 * mm)
        return float(y - 8 * mm)

    page = [1]

    def page_footer() -> None:
        c.setFont(font, 8)
        c.drawRightString(right, 12 * mm, f"凭证验证码 {data.code}　第 {page[0]} 页")

    y = table_head(y)
    c.setFont(font, 10)
    for line in data.lines:
        if y < 40 * mm:
            page_footer()
            c.showPage()
            page[0] += 1
            y = table_head(header())
            c.setFont(font, 10)
        values = [line.month, INSURANCE_ZH.get(line.insurance, line.insurance), PAYER_ZH.get(line.payer, line.payer),
                  fen_to_display(line.base_fen), _rate(line.rate_bp), fen_to_display(line.amount_fen)]
        for x, v in zip(cols, values, strict=True):
            c.drawString(x, y, v)
        y -= 6.5 * mm
    c.line(left, y + 3 * mm, right, y + 3 * mm)
    c.setFont(font, 11)
    c.drawString(cols[4], y - 3 * mm, "合计")
    c.drawString(cols[5], y - 3 * mm, fen_to_display(data.amount_fen))

    c.setFont(font, 8.5)
    issued = data.issued_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    c.drawString(left, 28 * mm, f"本凭证由社会保险经办系统于 {issued} 出具。可扫描二维码或凭验证码在线核验真伪：")
    c.drawString(left, 23 * mm, data.verify_url)
    c.drawString(left, 18 * mm, "证件号码已作脱敏处理。政府补贴不计入个人缴费金额。")
    page_footer()
    c.showPage()
    c.save()
    return buf.getvalue()
