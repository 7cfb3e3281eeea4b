"""What Graph's answer to a token probe means, in words an operator can act on.

``capi-stream check`` reads each configured pixel (``GET /{version}/{pixel_id}?fields=id,name``)
with the token the deliverer would use. :func:`pixel_verdict` turns the answer into one
:class:`PixelVerdict`; Meta's own code, subcode, message and ``fbtrace_id`` are kept so the line
can be quoted to Meta's support.

==================================  =====================================================
answer                              problem
==================================  =====================================================
200 with the pixel's ``id``         none (``name`` is shown)
code 190 (102, 104)                 ``token invalid`` (expired, revoked, mistyped, missing)
code 10, 200-299                    ``no permission on this pixel``
code 100 subcode 33, code 803       ``unknown pixel`` (Graph says the same when the token
                                    cannot see it: both are worth checking)
code 100 naming ``appsecret_proof``  ``app secret does not match the token's app``
throttle, 5xx, transport failure    ``unreachable or busy`` (not a verdict on the token)
==================================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

TOKEN_CODES: Final = frozenset({102, 104, 190})
PERMISSION_CODES: Final = frozenset({10, *range(200, 300)})
UNKNOWN_OBJECT_SUBCODE: Final = 33
OBJECT_MISSING_CODE: Final = 803
INVALID_PARAMETER_CODE: Final = 100


@dataclass(frozen=True, slots=True)
class PixelVerdict:
    """One pixel's probe: ``problem`` is None when the token may use the pixel."""

    pixel_id: str
    problem: str | None
    name: str | None = None
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    fbtrace_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        """``pixel 123: ok (name "Shop")`` or ``pixel 123: token invalid (code 190: …)``."""
        if self.problem is None:
            return f'pixel {self.pixel_id}: ok (name "{self.name or "?"}")'
        meta = []
        if self.code is not None:
            meta.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode else ""))
        if self.message:
            meta.append(self.message)
        if self.fbtrace_id:
            meta.append(f"fbtrace_id {self.fbtrace_id}")
        detail = (
            f" ({': '.join(meta[:2])}{'; ' + meta[2] if len(meta) > 2 else ''})" if meta else ""
        )
        return f"pixel {self.pixel_id}: {self.problem}{detail}"


def pixel_verdict(
    pixel_id: str, status: int | None, body: bytes | None, transport_error: str | None
) -> PixelVerdict:
    """Classify one probe answer (see the module's table)."""
    if transport_error is not None or status is None:
        return PixelVerdict(pixel_id, f"unreachable ({transport_error or 'no answer'})")
    try:
        parsed = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return _error_verdict(pixel_id, status, error)
    if 200 <= status < 300 and isinstance(parsed, dict) and "id" in parsed:
        name = parsed.get("name")
        return PixelVerdict(pixel_id, None, name=str(name) if name is not None else None)
    return PixelVerdict(pixel_id, f"unexpected answer (HTTP {status})")


def _error_verdict(pixel_id: str, status: int, error: dict[str, object]) -> PixelVerdict:
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    message = str(error.get("message") or "")
    trace = error.get("fbtrace_id")
    if code in TOKEN_CODES:
        problem = "token invalid"
    elif code in PERMISSION_CODES:
        problem = "no permission on this pixel"
    elif code == OBJECT_MISSING_CODE or (
        code == INVALID_PARAMETER_CODE and subcode == UNKNOWN_OBJECT_SUBCODE
    ):
        problem = "unknown pixel (or hidden from this token)"
    elif code == INVALID_PARAMETER_CODE and "appsecret_proof" in message.lower():
        problem = "app secret does not match the token's app"
    elif status == 429 or status >= 500 or error.get("is_transient") is True:
        problem = f"destination busy or failing (HTTP {status})"
    else:
        problem = f"refused (HTTP {status})"
    return PixelVerdict(
        pixel_id, problem, code=code, subcode=subcode, message=message or None,
        fbtrace_id=str(trace) if trace else None,
    )  # fmt: skip


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
