"""Dates as the province writes them (formats in ``mappings/provincial/codes.toml``): local
Vietnam time, no zone on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from hub.errors import ValidationError

# strftime directives -> the dd/MM/yyyy pattern people read in specifications.
_READABLE = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss"}


def readable(fmt: str) -> str:
    for directive, pattern in _READABLE.items():
        fmt = fmt.replace(directive, pattern)
    return fmt


@dataclass(frozen=True, slots=True)
class WireDates:
    datetime_format: str
    date_format: str
    zone: ZoneInfo

    def write(self, value: datetime) -> str:
        """An aware time is converted to the wire's zone; a naive one is taken as already in it."""
        local = value.astimezone(self.zone) if value.tzinfo is not None else value
        return local.strftime(self.datetime_format)

    def write_date(self, value: date) -> str:
        return value.strftime(self.date_format)

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
            # strptime also takes one-digit days and months; the wire has fixed widths.
            if parsed.strftime(fmt) != text:
                raise ValueError(text)
        except ValueError:
            raise ValidationError(
                f"{text[:40]!r} is not a date in the form {readable(fmt)} (e.g. {example!r}, "
                f"{self.zone.key} time)",
                field=field,
            ) from None
        return parsed

    def read(self, text: object, field: str) -> datetime:
        return self._parse(text, self.datetime_format, field).replace(tzinfo=self.zone)

    def read_date(self, text: object, field: str) -> date:
        return self._parse(text, self.date_format, field).date()
