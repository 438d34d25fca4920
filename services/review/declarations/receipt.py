"""The annual declaration receipt (回执), a PDF in Chinese with an embedded TrueType font."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from services.common.clock import aware
from services.review.models import AnnualDeclaration, Employer

SHANGHAI = ZoneInfo("Asia/Shanghai")

STATUS_ZH = {
    "draft": "草稿（未提交）",
    "submitted": "已提交，待审核",
    "returned": "已退回，请修改后重新提交",
    "approved": "审核通过",
    "assessed": "逾期未申报，已按上年基数的110%核定",
}


@lru_cache(maxsize=4)
def _font(path: str) -> str:
    """Register the TrueType font once per file; reportlab embeds the glyphs used."""
    name = "ReceiptCJK-" + Path(path).stem
    pdfmetrics.registerFont(TTFont(name, path))
    return name


def yuan(fen: int) -> str:
    """Fen as a yuan amount with thousands separators (integer arithmetic, no float)."""
    sign = "-" if fen < 0 else ""
    y, f = divmod(abs(fen), 100)
    return f"{sign}{y:,}.{f:02d}"


def render_receipt(*, declaration: AnnualDeclaration, employer: Employer, font_file: Path) -> bytes:
    """One A4 page: employer, year, headcount, total wages, status, decision."""
    font = _font(str(font_file))
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, pageCompression=1)
    c.setTitle(f"社会保险年度申报回执 {declaration.year}")
    c.setAuthor("社会保险经办机构")
    width, height = A4
    c.setFont(font, 18)
    c.drawCentredString(width / 2, height - 30 * mm, "社会保险年度缴费工资申报回执")
    c.setFont(font, 10)
    c.drawCentredString(width / 2, height - 38 * mm, f"回执编号：{declaration.id}")
    rows = [
        ("单位名称", employer.name),
        ("统一社会信用代码", employer.credit_code),
        ("申报年度", f"{declaration.year} 年度职工工资"),
        ("新基数执行起始月", declaration.effective_from),
        ("申报人数", f"{declaration.headcount} 人"),
        ("工资总额（月平均合计）", f"{yuan(declaration.total_wages_fen)} 元"),
        ("申报状态", STATUS_ZH.get(declaration.status, declaration.status)),
    ]
    if declaration.submitted_at:
        rows.append(("提交时间", aware(declaration.submitted_at).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")))
    if declaration.decided_at:
        rows.append(("审核时间", aware(declaration.decided_at).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")))
    y = height - 55 * mm
    c.setLineWidth(0.5)
    for label, value in rows:
        c.setFont(font, 12)
        c.drawString(25 * mm, y, label)
        c.drawString(80 * mm, y, str(value)[:60])
        c.line(25 * mm, y - 3 * mm, width - 25 * mm, y - 3 * mm)
        y -= 11 * mm
    c.setFont(font, 12)
    c.drawString(25 * mm, y, "审核意见")
    y -= 8 * mm
    reasons = declaration.reasons or (["同意"] if declaration.status == "approved" else ["—"])
    c.setFont(font, 11)
    for i, r in enumerate(reasons[:12], start=1):
        for j in range(0, len(r), 38):
            c.drawString(30 * mm, y, (f"{i}. " if j == 0 else "   ") + r[j : j + 38])
            y -= 7 * mm
    c.setFont(font, 9)
    c.drawString(25 * mm, 20 * mm, "本回执由社会保险经办系统生成，可凭回执编号查询申报及审核结果。")
    c.showPage()
    c.save()
    return buf.getvalue()
