"""The event types this adapter consumes and emits. Their bodies are canonical models
(hub.model): a citizen's record and the verification answer."""

from hub.model import Address, CitizenRecord, CitizenVerified, Gender, PersonName, Relative

VERIFICATION_REQUESTED = "vn.gov.citizen.verification-requested"
VERIFIED = "vn.gov.citizen.verified"

__all__ = [
    "VERIFICATION_REQUESTED",
    "VERIFIED",
    "Address",
    "CitizenRecord",
    "CitizenVerified",
    "Gender",
    "PersonName",
    "Relative",
]
