"""The portal's mapping files (``mappings/npsp/*.toml``), loaded and checked once.

Every name the translation writes on the wire comes from here, so a renamed field or a changed
code is a file edit. A mistake in the files is a ``ConfigError`` naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hub import tomlmap
from hub.errors import ConfigError
from hub.model import ApplicantKind, Channel, Status
from hub.transport.replycodes import ReplyCodes
from hub.wiredates import WireDates

# The hub's names each table must map, no more and no fewer.
FIELDS: dict[str, frozenset[str]] = {
    "body": frozenset({
        "username", "password", "session", "agency", "service", "updating", "data",
        "lookup_code", "error_code", "message", "result",
    }),
    "calls": frozenset({"sync_dossiers", "report_progress", "lookup"}),
    "updating": frozenset({"insert", "update"}),
    "dossier": frozenset({
        "code", "procedure_code", "procedure_name", "field_code", "field_name", "channel",
        "applicant_name", "applicant_identity", "applicant_kind", "applicant_code",
        "received_at", "due_at", "returned_at", "resolved_at", "refused_at", "submitted_at",
        "status", "result_by_post", "handling_unit", "note", "attachments", "fees", "results",
        "identities", "paid_online",
    }),
    "attachment": frozenset({
        "id", "name", "component_code", "url", "digitized", "size", "sha256",
    }),
    "fee": frozenset({"name", "code", "method", "amount", "kind"}),
    "identity": frozenset({"kind", "number"}),
    "progress": frozenset({
        "dossier_code", "officer", "officer_title", "at", "department", "content", "status",
        "started_at", "due_at",
    }),
}
# Reply codes the protocol acts on (errors.toml), beside ok, retryable and permanent.
PROTOCOL_KINDS = frozenset({"session_expired", "already_exists", "not_found"})
# Dates of a dossier a status change may fill (status.toml [status_dates]).
DOSSIER_DATES = frozenset(
    {"received_at", "due_at", "returned_at", "resolved_at", "refused_at", "submitted_at"}
)


@dataclass(frozen=True)
class NpspMapping:
    body: dict[str, str]
    calls: dict[str, str]
    updating: dict[str, str]
    dossier: dict[str, str]
    attachment: dict[str, str]
    fee: dict[str, str]
    identity: dict[str, str]
    progress: dict[str, str]
    status_to_wire: dict[Status, str]
    status_from_wire: dict[str, Status]
    status_dates: dict[Status, str]
    channel_to_wire: dict[Channel, str]
    channel_from_wire: dict[str, Channel]
    kind_to_wire: dict[ApplicantKind, str]
    kind_from_wire: dict[str, ApplicantKind]
    identity_kinds: dict[str, str]
    true_value: str
    false_value: str
    dates: WireDates
    replies: ReplyCodes


@lru_cache(maxsize=8)
def load_mapping(directory: Path) -> NpspMapping:
    fields_file, status_file = directory / "fields.toml", directory / "status.toml"
    codes_file, errors_file = directory / "codes.toml", directory / "errors.toml"
    fields = tomlmap.read(fields_file)
    status, codes = tomlmap.read(status_file), tomlmap.read(codes_file)
    # Several calls may share a wire word (one endpoint, told apart by "service").
    names = {
        key: tomlmap.exact_names(
            fields, key, fields_file.name, FIELDS[key], unique=key not in ("calls", "updating")
        )
        for key in FIELDS
    }

    status_from = tomlmap.bijection(status, "status", Status, status_file.name)
    status_dates: dict[Status, str] = {}
    for name, field in status.get("status_dates", {}).items():
        at = f"{status_file.name} [status_dates].{name}"
        if name not in Status.__members__:
            raise ConfigError(f"{name!r} is not a status name", field=at)
        if field not in DOSSIER_DATES:
            raise ConfigError(f"{field!r} is not one of {sorted(DOSSIER_DATES)}", field=at)
        status_dates[Status[name]] = field

    channel_from = tomlmap.bijection(codes, "channel", Channel, codes_file.name)
    kind_from = tomlmap.bijection(codes, "applicant_kind", ApplicantKind, codes_file.name)
    id_kinds = tomlmap.table(codes, "identity_kind", codes_file.name)
    for key in ("citizen_id", "old_id_card"):
        if not isinstance(id_kinds.get(key), str):
            raise ConfigError(
                "needs a string code", field=f"{codes_file.name} [identity_kind].{key}"
            )
    booleans = tomlmap.distinct_words(codes, "booleans", ("true", "false"), codes_file.name)
    body = names["body"]
    replies = ReplyCodes.parse(
        tomlmap.read(errors_file), errors_file.name, system="npsp", title="the portal",
        code_key=body["error_code"], message_key=body["message"], kinds=PROTOCOL_KINDS,
    )
    return NpspMapping(
        body=names["body"],
        calls=names["calls"],
        updating=names["updating"],
        dossier=names["dossier"],
        attachment=names["attachment"],
        fee=names["fee"],
        identity=names["identity"],
        progress=names["progress"],
        status_to_wire={v: k for k, v in status_from.items()},
        status_from_wire=status_from,
        status_dates=status_dates,
        channel_to_wire={v: k for k, v in channel_from.items()},
        channel_from_wire=channel_from,
        kind_to_wire={v: k for k, v in kind_from.items()},
        kind_from_wire=kind_from,
        identity_kinds={k: str(v) for k, v in id_kinds.items()},
        true_value=booleans["true"],
        false_value=booleans["false"],
        dates=tomlmap.wire_dates(codes, codes_file.name),
        replies=replies,
    )
