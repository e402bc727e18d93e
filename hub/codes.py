"""Parsing and validation of Vietnam's administrative codes.

Each parser takes the raw string and the name of the field it came from, so the error can say
which field was wrong, what is wrong with it and what a correct value looks like.

A code is taken exactly as written: the canonical model and the entry points refuse blanks
around it, as the contracts' patterns do. ``strip=True`` takes and strips them, for an adapter
reading an external system's own format, where a padded code is that system's habit rather
than a different code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from hub.errors import CodeError
from hub.privacy import scrub

# Agency codes (Decision 20/2020/QĐ-TTg): `000.00.00.H56` for a province, `000.00.00.G22` for a
# ministry; lower units extend it on either side (`000.20.31.H56`, `H55.242`). The anchor is one
# letter and two digits; numeric segments of 2-3 digits stand before it and 1-4 digits after.
# re.ASCII: a Python \d is any Unicode digit ("０", "٣"), which the contracts' patterns
# (schemas/api, ECMA-262 regexes) and the systems downstream refuse.
_AGENCY = r"(?:\d{2,3}\.){0,3}[A-Z]\d{2}(?:\.\d{1,4}){0,3}"
_AGENCY_RE = re.compile(rf"^{_AGENCY}$", re.ASCII)
_DOSSIER_RE = re.compile(rf"^(?P<agency>{_AGENCY})-(?P<date>\d{{6}})-(?P<counter>\d{{4}})$",
                         re.ASCII)
_PROCEDURE_RE = re.compile(
    rf"^(?P<base>\d\.\d{{6}})(?:\.(?P<agency>{_AGENCY}))?(?:\.(?P<service>0\d))?$", re.ASCII
)
_IDENTITY_RE = re.compile(r"^\d{12}$", re.ASCII)
_OLD_ID_RE = re.compile(r"^\d{9}$", re.ASCII)


def _require_str(value: object, field: str, strip: bool, example: str) -> str:
    if not isinstance(value, str):
        raise CodeError(f"must be a string, got {type(value).__name__}", field=field)
    stripped = value.strip()
    if not stripped:
        raise CodeError("is empty; a code is required", field=field)
    if not strip and len(stripped) != len(value):
        # The contracts' patterns hold no blanks, and a code is compared and routed as it is
        # written. Not echoed: an identity number is personal data.
        raise CodeError(f"has blanks (spaces, tabs or line breaks) around the code; send the "
                        f"code alone, like {example!r}", field=field)
    return stripped


@dataclass(frozen=True, slots=True)
class AgencyCode:
    value: str

    @property
    def anchor(self) -> str:
        """The province or ministry letter code, e.g. ``H56`` or ``G22``."""
        return next(p for p in self.value.split(".") if p[0].isalpha())

    @property
    def is_ministry(self) -> bool:
        return self.anchor.startswith("G")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class DossierCode:
    value: str
    agency: AgencyCode
    day: date
    counter: int

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ProcedureCode:
    value: str
    base: str
    agency: AgencyCode | None
    service: str | None

    def __str__(self) -> str:
        return self.value


def parse_agency(value: object, field: str = "agency", *, strip: bool = False) -> AgencyCode:
    text = _require_str(value, field, strip, "000.00.00.H56")
    if not _AGENCY_RE.match(text):
        raise CodeError(
            f"{text!r} is not an agency code; expected digits and one letter code separated "
            "by dots, like '000.00.00.H56' (province) or '000.00.00.G22' (ministry)",
            field=field,
        )
    return AgencyCode(text)


def parse_dossier(
    value: object, field: str = "dossier_code", *, strip: bool = False
) -> DossierCode:
    text = _require_str(value, field, strip, "000.00.00.H56-250101-0001")
    m = _DOSSIER_RE.match(text)
    if not m:
        raise CodeError(
            f"{text!r} is not a dossier code; expected '<agency>-<yyMMdd>-<NNNN>' like "
            "'000.00.00.H56-250101-0001'",
            field=field,
        )
    raw = m["date"]
    try:
        day = date(2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:6]))
    except ValueError:
        raise CodeError(
            f"{text!r} carries the date {raw!r}, which is not a real yyMMdd date",
            field=field,
        ) from None
    counter = int(m["counter"])
    if counter == 0:
        raise CodeError(f"{text!r} has counter 0000; the daily counter starts at 0001", field=field)
    return DossierCode(text, AgencyCode(m["agency"]), day, counter)


def parse_procedure(
    value: object, field: str = "procedure_code", *, strip: bool = False
) -> ProcedureCode:
    text = _require_str(value, field, strip, "2.002492")
    m = _PROCEDURE_RE.match(text)
    if not m:
        raise CodeError(
            f"{text!r} is not a procedure code; expected 'd.dddddd' like '2.002492', "
            "optionally followed by an agency code and a '.01'-style service suffix",
            field=field,
        )
    agency = AgencyCode(m["agency"]) if m["agency"] else None
    return ProcedureCode(text, m["base"], agency, m["service"])


def parse_identity(
    value: object, field: str = "identity_number", *, allow_old: bool = False,
    strip: bool = False,
) -> str:
    """A 12-digit citizen identity number; with ``allow_old`` also a 9-digit old ID card."""
    text = _require_str(value, field, strip, "001099012345")
    if _IDENTITY_RE.match(text) or (allow_old and _OLD_ID_RE.match(text)):
        return text
    expected = "12 digits (or 9 for an old ID card)" if allow_old else "exactly 12 digits"
    # The value may be a real identity number with a typo: never echo it in clear.
    shown = scrub(text if len(text) <= 20 else text[:20] + "…")
    raise CodeError(
        f"{shown!r} ({len(text)} characters) is not an identity number; expected {expected}",
        field=field,
    )


def encode_for_routing(code: str) -> str:
    """Codes contain dots, which AMQP topic keys use as separators: map them to underscores
    (no code contains an underscore, so the mapping is reversible)."""
    return code.replace(".", "_")


def decode_from_routing(segment: str) -> str:
    return segment.replace("_", ".")
