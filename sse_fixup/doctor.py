"""``sse-fixup doctor``: probe a backend, validate what it sends, show what the rules fix.

(Being written: issue 16.)
"""

from __future__ import annotations


def add_parser(sub) -> None:
    sub.add_parser("doctor", help="probe a backend and report what strict clients would trip over")


def run(args) -> int:
    raise SystemExit("sse-fixup doctor: not written yet")
