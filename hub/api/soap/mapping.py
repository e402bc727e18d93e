"""From the request's XML elements to the canonical model's dict, and back for error paths.

An explicit table, one entry per element of schemas/soap/intake.xsd: XML name, canonical field
name, and how to read the text (the XSD has already checked it, so reading is plain). It is
several times faster than a generic XSD decoder (xmlschema's ``to_dict``) and says exactly
which element becomes which field. Errors the canonical model raises name its fields
(``applicant.identity_number``); ``xml_path`` turns them back into the element path the sender
wrote (``dossier/applicant/identityNumber``).

Beside the data element, the request element carries ``createdAt``, the time the sender signed
it: ``created_at`` reads it as an aware datetime, for the age check (``freshness``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from lxml import etree

from hub.api.soap.contract import NS
from hub.errors import ValidationError

_PREFIX = f"{{{NS}}}"

Convert = Callable[[str], Any]


def text(value: str) -> str:
    return value


def integer(value: str) -> int:
    return int(value.strip())


def boolean(value: str) -> bool:
    return value.strip() in ("true", "1")


def collapsed(value: str) -> str:
    # xs:decimal, xs:date: the lexical form, whitespace collapsed; the model parses it (Decimal
    # keeps every digit, a float would not).
    return value.strip()


def date_time(value: str) -> datetime | str:
    # xs:dateTime as a datetime, which the model takes as it is. Its text is no fit for the
    # model, which holds a time's text to the JSON contracts' form: the XSD allows fractions of
    # any length (.NET writes seven digits) and 24:00:00. A time no datetime holds (year 0 or
    # 10000) stays text, for the model to refuse naming the field.
    text = value.strip()
    parsed = _xs_datetime(text)
    return text if parsed is None else parsed


@dataclass(frozen=True, slots=True)
class Field:
    """One child element: a leaf (``convert``), a nested object (``shape``), or a wrapper of
    repeated ``item`` elements each of ``shape`` (a list)."""

    xml: str
    name: str
    convert: Convert = text
    shape: Shape | None = None
    item: str | None = None


class Shape:
    """The fields of one complex element."""

    def __init__(self, *fields: Field) -> None:
        self.fields = fields
        self._by_tag = {_PREFIX + f.xml: f for f in fields}
        self._by_name = {f.name: f for f in fields}

    def read(self, element: etree._Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in element:
            field = self._by_tag.get(child.tag)
            if field is None:
                continue  # the signature, or anything the XSD lets through unprocessed
            if field.shape is None:
                out[field.name] = field.convert(child.text or "")
            elif field.item is None:
                out[field.name] = field.shape.read(child)
            else:
                item_tag = _PREFIX + field.item
                out[field.name] = [field.shape.read(i) for i in child if i.tag == item_tag]
        return out

    def xml_path(self, dotted: str) -> str | None:
        """``attachments.0.sha256`` -> ``attachments/attachment[1]/sha256``; None if the first
        name is not one of this shape's fields."""
        parts = dotted.split(".")
        out: list[str] = []
        shape: Shape | None = self
        i = 0
        while i < len(parts):
            field = shape._by_name.get(parts[i]) if shape is not None else None
            if field is None:
                if not out:
                    return None
                out.extend(parts[i:])  # deeper than the table knows: keep the model's names
                break
            out.append(field.xml)
            shape = field.shape
            if field.item is not None and i + 1 < len(parts) and parts[i + 1].isdigit():
                out.append(f"{field.item}[{int(parts[i + 1]) + 1}]")
                i += 1
            i += 1
        return "/".join(out)


APPLICANT = Shape(
    Field("identityNumber", "identity_number"),
    Field("name", "name"),
    Field("birthDate", "birth_date", collapsed),
    Field("kind", "kind", integer),
    Field("address", "address"),
    Field("phone", "phone"),
    Field("email", "email"),
)

ATTACHMENT = Shape(
    Field("id", "id"),
    Field("name", "name"),
    Field("url", "url", collapsed),
    Field("size", "size", integer),
    Field("sha256", "sha256"),
    Field("componentCode", "component_code"),
    Field("digitized", "digitized", boolean),
)

FEE = Shape(
    Field("code", "code"),
    Field("name", "name"),
    Field("amount", "amount", collapsed),
    Field("kind", "kind", integer),
    Field("method", "method", integer),
)

DOSSIER = Shape(
    Field("code", "code"),
    Field("procedureCode", "procedure_code"),
    Field("procedureName", "procedure_name"),
    Field("fieldCode", "field_code"),
    Field("fieldName", "field_name"),
    Field("agencyCode", "agency_code"),
    Field("applicant", "applicant", shape=APPLICANT),
    Field("channel", "channel", integer),
    Field("status", "status", integer),
    Field("submittedAt", "submitted_at", date_time),
    Field("receivedAt", "received_at", date_time),
    Field("dueAt", "due_at", date_time),
    Field("resolvedAt", "resolved_at", date_time),
    Field("returnedAt", "returned_at", date_time),
    Field("refusedAt", "refused_at", date_time),
    Field("resultByPost", "result_by_post", boolean),
    Field("handlingUnit", "handling_unit"),
    Field("note", "note"),
    Field("attachments", "attachments", shape=ATTACHMENT, item="attachment"),
    Field("fees", "fees", shape=FEE, item="fee"),
    Field("paidOnline", "paid_online", boolean),
)

STATUS_CHANGE = Shape(
    Field("dossierCode", "dossier_code"),
    Field("status", "status", integer),
    Field("previousStatus", "previous_status", integer),
    Field("at", "at", date_time),
    Field("officer", "officer"),
    Field("note", "note"),
)

PROGRESS_STEP = Shape(
    Field("dossierCode", "dossier_code"),
    Field("officer", "officer"),
    Field("officerTitle", "officer_title"),
    Field("department", "department"),
    Field("content", "content"),
    Field("status", "status", integer),
    Field("at", "at", date_time),
    Field("startedAt", "started_at", date_time),
    Field("dueAt", "due_at", date_time),
)


CREATED_AT: Final = "createdAt"
CREATED_AT_TAG: Final = _PREFIX + CREATED_AT
# xs:dateTime allows 24:00:00, the end of a day: the next day's midnight.
_END_OF_DAY: Final = "T24:00:00"


def _xs_datetime(text: str) -> datetime | None:
    """An xs:dateTime the XSD has checked, or None for the values Python's datetime cannot
    hold (years outside 1-9999)."""
    try:
        if _END_OF_DAY in text:
            # Only 24:00:00 (with zero fractions) is valid there: the XSD checked it.
            head, _, tail = text.partition(_END_OF_DAY)
            value = datetime.fromisoformat(f"{head}T00:00:00{tail.lstrip('.0')}")
            return value + timedelta(days=1)
        return datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        return None


def created_at(request: etree._Element) -> datetime:
    """The request element's ``createdAt`` as an aware datetime. The XSD has checked that it is
    there and is an xs:dateTime with a time zone; what is left are the values Python's datetime
    cannot hold (years outside 1-9999)."""
    text = (request.findtext(CREATED_AT_TAG) or "").strip()
    value = _xs_datetime(text)
    if value is None or value.tzinfo is None:
        raise ValidationError(
            f"createdAt {text!r:.60} cannot be read as a time with its time zone; send the "
            "time the request was made and signed, e.g. 2025-03-01T08:00:00+07:00",
            field=CREATED_AT)
    return value
