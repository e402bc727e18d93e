"""Dates as the portal writes them: ``yyyyMMddHHmmss`` in Vietnam time, no zone on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from hub.errors import ValidationError

# strftime directives -> the yyyy/MM/dd pattern people read in specifications.
_READABLE = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss"}


def readable(fmt: str) -> str:
    for directive, pattern in _READABLE.items():
        fmt = fmt.replace(directive, pattern)
    return fmt


@dataclass(frozen=True, slots=True)
class WireDates:
    format: str
    zone: ZoneInfo

    def write(self, value: datetime) -> str:
        """An aware time is converted to the wire's zone; a naive one is taken as already in it
        (the convention of every system here)."""
        local = value.astimezone(self.zone) if value.tzinfo is not None else value
        return local.strftime(self.format)

    def read(self, text: object, field: str) -> datetime:
        example = datetime(2025, 1, 1, 8, 30).strftime(self.format)
        if not isinstance(text, str):
            raise ValidationError(
                f"must be a date string like {example!r} ({readable(self.format)}), "
                f"got {type(text).__name__}",
                field=field,
            )
        try:
            parsed = datetime.strptime(text, self.format)
            # strptime takes one-digit months and days too; the wire has fixed widths.
            if parsed.strftime(self.format) != text:
                raise ValueError(text)
        except ValueError:
            raise ValidationError(
                f"{text[:40]!r} is not a date in the form {readable(self.format)} "
                f"(e.g. {example!r}, {self.zone.key} time)",
                field=field,
            ) from None
        return parsed.replace(tzinfo=self.zone)
