"""Dates as a system writes them on the wire: a strftime format in a local time zone, no zone
written (the convention of the systems the hub talks to)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
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
    date_format: str = "%Y-%m-%d"

    def write(self, value: datetime) -> str:
        """An aware time is converted to the wire's zone; a naive one is taken as already in it
        (the convention of every system here)."""
        local = value.astimezone(self.zone) if value.tzinfo is not None else value
        return local.strftime(self.format)

    def write_date(self, value: date) -> str:
        return value.strftime(self.date_format)

    def read(self, text: object, field: str) -> datetime:
        return self._parse(text, self.format, field).replace(tzinfo=self.zone)

    def read_date(self, text: object, field: str) -> date:
        return self._parse(text, self.date_format, field).date()

    def _parse(self, text: object, fmt: str, field: str) -> datetime:
        example = datetime(2025, 1, 1, 8, 30).strftime(fmt)
        if not isinstance(text, str):
            raise ValidationError(
                f"must be a date string like {example!r} ({readable(fmt)}), "
                f"got {type(text).__name__}",
                field=field,
            )
        try:
            parsed = datetime.strptime(text, fmt)
            # strptime takes one-digit months and days too; the wire has fixed widths.
            if parsed.strftime(fmt) != text:
                raise ValueError(text)
        except ValueError:
            raise ValidationError(
                f"{text[:40]!r} is not a date in the form {readable(fmt)} "
                f"(e.g. {example!r}, {self.zone.key} time)",
                field=field,
            ) from None
        return parsed
