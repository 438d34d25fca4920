"""Write a key set (JWKS) for a key rotation: `python -m devtools.jwks [--out FILE] KEY.pem ...`.

Each argument is an ES256 (P-256) public key PEM, or a private key PEM whose public half is taken;
each key's `kid` is its RFC 7638 thumbprint, as the gateway and the card service send it by
default. `KEY.pem=ID` names a key with a configured id (GATEWAY_SIGNING_KEY_ID, CARD_QR_SIGNING_KEY_ID)
instead. With --out the file is written beside and renamed over the old one, so a process reading
it never sees half a file; without it the JWKS is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from services.common.keyset import jwks_document, public_key_of_pem, thumbprint


def build(specs: list[str]) -> dict[str, object]:
    """The JWKS of `PEM` or `PEM=kid` arguments."""
    pairs = []
    for spec in specs:
        path, sep, kid = spec.partition("=")
        key = public_key_of_pem(Path(path).read_text(encoding="utf-8"))
        pairs.append((kid if sep and kid else thumbprint(key), key))
    kids = [kid for kid, _ in pairs]
    if len(set(kids)) != len(kids):
        raise ValueError("a key is listed twice")
    return jwks_document(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.jwks", description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="+", metavar="KEY.pem[=kid]")
    parser.add_argument("--out", type=Path, help="write the JWKS to this file (atomically)")
    args = parser.parse_args(argv)
    try:
        text = json.dumps(build(args.keys), indent=2) + "\n"
    except (OSError, ValueError) as exc:
        print(f"jwks: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
        return 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
