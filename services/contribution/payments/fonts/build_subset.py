"""Rebuild the certificate font: Noto Sans CJK SC (OFL-1.1) subset to GB2312 and every character
of the region names in the GB/T 2260 table (a few are outside GB2312: 埇桥区, 硚口区, 鄠邑区 ...),
TrueType outlines. Rebuild it when the division table is updated.

reportlab embeds TrueType (glyf) fonts only, and Noto Sans CJK ships CFF outlines,
so the subset is converted to quadratic curves. Run from the repository root with
Debian's fonts-noto-cjk installed:

    .venv/bin/python -m services.contribution.payments.fonts.build_subset
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.recordingPen import DecomposingRecordingPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable

SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
TARGET = Path(__file__).with_name("NotoSansSC-Subset.ttf")
MAX_ERR = 1.0  # font units: the quadratic approximation stays within one unit


def gb2312_characters() -> str:
    """Every character of GB2312 (both hanzi levels, symbols, full-width forms)."""
    chars = []
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return "".join(chars)


def region_name_characters() -> str:
    """Every character of the division names the certificate may print."""
    from services.common.regions import known_codes, region_name

    return "".join(sorted({ch for code in known_codes() for ch in region_name(code) or ""}))


def text_to_keep() -> str:
    ascii_ = "".join(chr(c) for c in range(0x20, 0x7F))
    extra = "￥¥·—–‘’“”…、。，：；？！（）《》【】〔〕　" + "○〇"
    return ascii_ + extra + gb2312_characters() + region_name_characters()


def pick_sc(collection: TTCollection) -> TTFont:
    for font in collection.fonts:
        names = {r.toUnicode() for r in font["name"].names if r.nameID in (1, 4)}
        if any("CJK SC" in n for n in names):
            return font
    raise SystemExit("Noto Sans CJK SC not found in the collection")


def cff_to_glyf(font: TTFont) -> None:
    """Replace CFF outlines by TrueType quadratic outlines."""
    glyph_set = font.getGlyphSet()
    order = font.getGlyphOrder()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        rec = DecomposingRecordingPen(glyph_set)
        glyph_set[name].draw(rec)
        tt_pen = TTGlyphPen(None)
        rec.replay(Cu2QuPen(tt_pen, MAX_ERR, reverse_direction=True))
        glyf.glyphs[name] = tt_pen.glyph()
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for attr, value in (
        ("maxZones", 1), ("maxTwilightPoints", 0), ("maxStorage", 0), ("maxFunctionDefs", 0),
        ("maxInstructionDefs", 0), ("maxStackElements", 0), ("maxSizeOfInstructions", 0),
        ("maxComponentElements", 0), ("maxComponentDepth", 0), ("maxPoints", 0), ("maxContours", 0),
        ("maxCompositePoints", 0), ("maxCompositeContours", 0),
    ):
        setattr(maxp, attr, value)
    font["head"].glyphDataFormat = 0
    font["head"].indexToLocFormat = 1
    del font["CFF "]
    if "VORG" in font:
        del font["VORG"]
    font.sfntVersion = "\x00\x01\x00\x00"
    font["post"].formatType = 2.0
    font["post"].extraNames = []
    font["post"].mapping = {}
    font["post"].glyphOrder = None


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    font = pick_sc(TTCollection(str(source)))
    options = subset.Options()
    options.layout_features = []
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.desubroutinize = True
    sub = subset.Subsetter(options)
    sub.populate(text=text_to_keep())
    sub.subset(font)
    cff_to_glyf(font)
    font.save(str(TARGET))
    print(f"{TARGET}: {TARGET.stat().st_size} bytes, {len(font.getGlyphOrder())} glyphs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
