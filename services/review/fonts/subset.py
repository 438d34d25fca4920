"""Rebuild the shipped receipt font "ReceiptKai": LXGW WenKai (SIL OFL 1.1) cut to GB 2312 and ASCII, renamed.

    .venv/bin/python -m services.review.fonts.subset /usr/share/fonts/truetype/lxgw-wenkai/LXGWWenKai-Regular.ttf

GB 2312 holds the 6,763 common hanzi, which covers nearly every unit and person name;
a deployment that needs more points REVIEW_RECEIPT_FONT_FILE at a full TrueType font.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset

OUT = Path(__file__).with_name("ReceiptKai-GB2312.ttf")
FAMILY = "ReceiptKai"


def gb2312_chars() -> str:
    """Every character of GB 2312 (symbols, hanzi levels 1 and 2)."""
    out = []
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return "".join(out)


def main(source: str) -> None:
    text = "".join(chr(c) for c in range(0x20, 0x7F)) + gb2312_chars() + "　、。，．：；？！（）《》“”‘’·—…￥"
    opts = subset.Options()
    opts.layout_features = []
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    opts.hinting = False
    font = subset.load_font(source, opts)
    sub = subset.Subsetter(opts)
    sub.populate(text=text)
    sub.subset(font)
    # OFL: a modified font may not keep the Reserved Font Names ("LXGW", "霞鹜").
    name = font["name"]
    for rec in list(name.names):
        if rec.nameID in (1, 3, 4, 6, 16, 17, 18, 21, 22):
            name.removeNames(nameID=rec.nameID)
    for nid, value in ((1, FAMILY), (2, "Regular"), (3, FAMILY + "-Regular"), (4, FAMILY), (6, FAMILY + "-Regular")):
        name.setName(value, nid, 3, 1, 0x409)
        name.setName(value, nid, 1, 0, 0)
    subset.save_font(font, str(OUT), opts)
    print(OUT, OUT.stat().st_size)


if __name__ == "__main__":
    main(sys.argv[1])
