"""One outbound transport for every call of the hub to an external system (see ``base``):
``HttpTransport`` for JSON over HTTP, ``SoapTransport`` for SOAP, both under ``Outbound``.
The SOAP transport is imported from ``hub.transport.soap``: zeep is only loaded by the adapters
that need it."""

from hub.transport.base import (
    Explain,
    Outbound,
    Reply,
    Request,
    Said,
    Transport,
    bad_reply,
    failure,
    retry_after,
)
from hub.transport.http import HttpTransport

__all__ = [
    "Explain",
    "HttpTransport",
    "Outbound",
    "Reply",
    "Request",
    "Said",
    "Transport",
    "bad_reply",
    "failure",
    "retry_after",
]
