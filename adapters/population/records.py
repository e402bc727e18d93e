"""Canonical models the core does not have yet: a citizen's record as the population database
returns it, and the body of the ``vn.gov.citizen.verified`` event.

They belong in hub/model.py (the lead has been asked to move them there and to register
``vn.gov.citizen.verified`` in EVENT_MODELS); until then they live here.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hub import codes
from hub.model import DossierStr, VnDateTime

VERIFICATION_REQUESTED = "vn.gov.citizen.verification-requested"
VERIFIED = "vn.gov.citizen.verified"

IdentityStr = Annotated[str, AfterValidator(lambda v: codes.parse_identity(v, "identity_number"))]
AnyIdentityStr = Annotated[
    str, AfterValidator(lambda v: codes.parse_identity(v, "identity_number", allow_old=True))
]
OldIdentityStr = Annotated[str, Field(pattern=r"^\d{9}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


class PersonName(_Model):
    family: str = Field(min_length=1, max_length=200)
    middle: str | None = None
    given: str = Field(min_length=1, max_length=200)

    @property
    def full(self) -> str:
        return " ".join(p for p in (self.family, self.middle, self.given) if p)


class Address(_Model):
    """Administrative unit codes plus free text. ``district_code`` is absent on addresses
    recorded after the district level was abolished (1 July 2025)."""

    province_code: str = Field(pattern=r"^\d{2,5}$")
    district_code: str | None = Field(default=None, pattern=r"^\d{2,5}$")
    commune_code: str | None = Field(default=None, pattern=r"^\d{2,5}$")
    detail: str | None = Field(default=None, max_length=500)


class Relative(_Model):
    name: str = Field(min_length=1, max_length=200)
    identity_number: IdentityStr | None = None


class CitizenRecord(_Model):
    identity_number: IdentityStr
    old_identity_number: OldIdentityStr | None = None
    name: PersonName
    gender: Gender
    ethnicity_code: str | None = None
    ethnicity: str | None = None  # decoded from the code by the mapping, when known
    nationality: str | None = None
    birth_date: date | None = None
    birth_year: int = Field(ge=1850, le=2200)
    hometown: Address | None = None
    permanent_address: Address | None = None
    current_address: Address | None = None
    father: Relative | None = None
    mother: Relative | None = None
    spouse: Relative | None = None

    @model_validator(mode="after")
    def _birth_consistent(self) -> Self:
        if self.birth_date is not None and self.birth_date.year != self.birth_year:
            raise ValueError(
                f"birth_year {self.birth_year} differs from the year of birth_date "
                f"{self.birth_date.year}"
            )
        return self


class CitizenVerified(_Model):
    """Body of ``vn.gov.citizen.verified``: the answer to a verification request. Kept minimal:
    the identity number says whom it is about, ``matched`` what the population database said.
    ``record`` is filled only when the adapter is configured to look the citizen up."""

    dossier_code: DossierStr | None = None
    identity_number: AnyIdentityStr  # as asked: 12 digits, or 9 for an old ID card
    matched: bool
    checked_at: VnDateTime
    record: CitizenRecord | None = None
