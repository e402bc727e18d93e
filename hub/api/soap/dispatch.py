"""The operations of the intake service and how a request finds its operation.

Dispatch is on the request element, the first (and only) child of Body: that is what the
signature covers and what the XSD validates. A SOAPAction header (SOAP 1.1) or an ``action``
parameter (SOAP 1.2) is optional; when one is sent it must name the same operation, so that a
gateway routing on the action and the hub never disagree about what a request is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lxml import etree

from hub.api.soap.contract import NS
from hub.api.soap.mapping import DOSSIER, PROGRESS_STEP, STATUS_CHANGE, Shape
from hub.errors import ClientError


class UnknownOperation(ClientError):
    code = "client.unknown_operation"


class ActionMismatch(ClientError):
    code = "client.action_mismatch"


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # the WSDL operation and its request element
    event_type: str  # the canonical event it becomes
    data: str  # the child element holding the event body
    shape: Shape  # how that element reads into the canonical model's dict

    @property
    def request_tag(self) -> str:
        return f"{{{NS}}}{self.name}"

    @property
    def response_tag(self) -> str:
        return f"{{{NS}}}{self.name}Response"

    @property
    def action(self) -> str:
        return f"{NS}:{self.name}"

    @property
    def data_tag(self) -> str:
        return f"{{{NS}}}{self.data}"


OPERATIONS: Final = (
    Operation("SubmitDossier", "vn.gov.dossier.submitted", "dossier", DOSSIER),
    Operation("ReportStatus", "vn.gov.dossier.status-changed", "statusChange", STATUS_CHANGE),
    Operation("ReportProgress", "vn.gov.dossier.progress-reported", "progress", PROGRESS_STEP),
)
_BY_TAG: Final = {op.request_tag: op for op in OPERATIONS}
_BY_ACTION: Final = {op.action: op for op in OPERATIONS}
_NAMES: Final = ", ".join(op.name for op in OPERATIONS)


def dispatch(payload: etree._Element, action: str | None,
             action_field: str = "SOAPAction") -> Operation:
    op = _BY_TAG.get(payload.tag)
    if op is None:
        qname = etree.QName(payload)
        if qname.namespace != NS and any(o.name == qname.localname for o in OPERATIONS):
            hint = f"put it in the namespace {NS!r} (it is in {qname.namespace!r})"
        else:
            hint = f"the service's operations are {_NAMES} in the namespace {NS!r}"
        raise UnknownOperation(
            f"the Body holds {qname.localname!r}, which is not an operation of this service; "
            f"{hint}",
            field="Body",
        )
    if action is not None and action != op.action:
        named = _BY_ACTION.get(action)
        said = f"operation {named.name}" if named else f"{action!r}, no operation of this service"
        raise ActionMismatch(
            f"the request element is {op.name} but the SOAP action names {said}; send the "
            f"action {op.action!r} (or none) with this request",
            field=action_field,
        )
    return op
