"""The AsyncAPI 3.0 document of the live configuration: what a ministry reads to consume.

- one server per broker node (AMQP 0.9.1, the hub's vhost), ministries authenticating with
  their own user (``lienthong subscriptions credentials``);
- the events exchange as a channel, with every event type the hub publishes
  (``hub.model.EVENT_MODELS``), and one channel per subscription (its queue), with the types it
  is bound to, each with its AMQP bindings (exchange, queue, routing keys);
- each message: the CloudEvents envelope (``schemas/broker/envelope.schema.json``) whose
  ``data`` is the event's schema: the REST contract's own file of ``schemas/api`` where the
  event enters through REST (one source), else the canonical model's schema (``hub.model``);
  its headers: the detached JWS (``lt-signature``) and how to verify it.

Components keep the contracts' titles and ``$defs`` names (``hub.api.openapi``); the event
bodies made from the models are ``<Model>`` with their definitions under ``<Model>.<def>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pika
import yaml

from hub import __version__
from hub.api.openapi import contract_components
from hub.broker.names import Names
from hub.envelope import CONTENT_TYPE, SEQUENCE_DIGITS
from hub.model import EVENT_MODELS
from hub.settings import Settings
from hub.store import Store
from hub.subscriptions import records
from hub.subscriptions.access import AccessList
from hub.subscriptions.model import Subscription, SubscriptionNames

COMPONENTS = "#/components/schemas/"
AMQP_BINDING = "0.3.0"

# The REST contract (schemas/api) of the events that enter through REST: their bodies are
# the events' data.
REST_CONTRACTS = {
    "vn.gov.dossier.submitted": "DossierSubmission",
    "vn.gov.dossier.status-changed": "StatusChangeReport",
    "vn.gov.dossier.progress-reported": "ProgressStepReport",
    "vn.gov.payment.requested": "FeePaymentRequest",
    "vn.gov.postal.pickup-requested": "PostalOrderRequest",
    "vn.gov.citizen.verification-requested": "CitizenVerificationRequest",
}

SIGNATURE_FORMAT = (
    "Detached compact JWS (RFC 7515) with an unencoded payload (RFC 7797): "
    "'<protected>..<signature>', the payload being the exact message body bytes (never "
    "re-serialised). Protected header: alg (ES256 by default; RS256 or PS256 for RSA keys of "
    "the government PKI; EdDSA for Ed25519), kid = the base64url (unpadded) SHA-256 "
    "thumbprint of the DER of the hub's X.509 certificate (x5t#S256), b64 = false, crit = "
    "['b64'], iat (signing time, unix seconds), lt-id (= the envelope's id and the AMQP "
    "message_id), lt-type (= the envelope's type), lt-src (= the envelope's source). To "
    "verify: compute the thumbprint of the hub certificate you were given and accept only a "
    "token whose kid equals it; pin alg to that key's algorithm; verify the signature over the "
    "body bytes as received with a stock JOSE library (joserfc: jws.deserialize_compact(token, "
    "key, payload=body)); check lt-id, lt-type and lt-src against the envelope; keep processed "
    "ids to absorb redeliveries and replays (same id, same event). Every copy a ministry "
    "receives is signed by the hub, whatever its source.")


def _message_name(event_type: str) -> str:
    return event_type.removeprefix("vn.gov.").replace(".", "-")


def _model_schemas(event_type: str) -> tuple[str, dict[str, dict[str, Any]]]:
    model = EVENT_MODELS[event_type]
    name = model.__name__
    schema = model.model_json_schema(mode="serialization",
                                     ref_template=COMPONENTS + name + ".{model}")
    defs = schema.pop("$defs", {})
    out = {name: schema}
    out.update({f"{name}.{k}": v for k, v in defs.items()})
    return name, out


def _envelope(settings: Settings) -> dict[str, Any]:
    path = Path(settings.schemas_dir) / "broker" / "envelope.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id", "$defs")}


def _headers() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["lt-signature"],
        "properties": {
            "lt-signature": {"type": "string", "description": SIGNATURE_FORMAT,
                             "pattern": "^[A-Za-z0-9_-]+\\.\\.[A-Za-z0-9_-]+$"},
            "lt-attempt": {"type": "integer", "minimum": 0,
                           "description": "the hub's delivery attempt counter (events "
                                          "exchange only)"},
            "lt-slot": {"type": "integer", "minimum": 0, "maximum": 63,
                        "description": "the dossier's slot (CRC-32 of the subject mod 64), "
                                       "events exchange only"},
        },
    }


def _message(event_type: str, data_ref: str, projection_note: str | None = None) -> dict[str, Any]:
    description = (
        f"A CloudEvents 1.0 event (structured JSON mode, {CONTENT_TYPE}) of type {event_type}. "
        "CloudEvents attributes: specversion, id (UUID, also the AMQP message_id), source "
        "(VN:GOV:<agency>:<system>, the originating system), type, subject (the dossier code), "
        "time (RFC 3339), datacontenttype; extensions: correlationid, causationid, agency, "
        "procedure, sequence (the hub's per-dossier order: a string of exactly "
        f"{SEQUENCE_DIGITS} digits, zero-padded, so strings sort as numbers) and "
        "systemsequence (the source system's own counter, a string).")
    if projection_note:
        description += " " + projection_note
    return {
        "name": event_type,
        "title": event_type,
        "contentType": CONTENT_TYPE,
        "description": description,
        "headers": {"$ref": COMPONENTS + "AmqpHeaders"},
        "payload": {"allOf": [
            {"$ref": COMPONENTS + "Envelope"},
            {"type": "object", "properties": {
                "type": {"const": event_type},
                "sequence": {"type": "string", "pattern": f"^[0-9]{{{SEQUENCE_DIGITS}}}$"},
                "data": {"$ref": data_ref}}},
        ]},
        "correlationId": {"description": "the dossier's correlation",
                          "location": "$message.payload#/correlationid"},
        "bindings": {"amqp": {"contentEncoding": "utf-8", "messageType": event_type,
                              "bindingVersion": AMQP_BINDING}},
    }


def _servers(settings: Settings) -> dict[str, Any]:
    servers = {}
    for i, url in enumerate(settings.broker_urls):
        parts = urlsplit(url)
        vhost = pika.URLParameters(url).virtual_host
        servers[f"node{i}"] = {
            "host": f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}",
            "protocol": parts.scheme, "protocolVersion": "0.9.1", "pathname": "/" + vhost,
            "description": "a node of the hub's RabbitMQ cluster; connect to any",
            "security": [{"$ref": "#/components/securitySchemes/ministryUser"}],
        }
    return servers


def document(settings: Settings, store: Store | None = None,
             subs: list[Subscription] | None = None) -> dict[str, Any]:
    if subs is None:
        subs = records.all_(store) if store is not None else []
    names = Names(settings.name_prefix)
    sn = SubscriptionNames(names)
    vhost = pika.URLParameters(settings.broker_urls[0]).virtual_host
    access = AccessList.load(settings)
    schemas: dict[str, Any] = dict(contract_components(Path(settings.schemas_dir) / "api"))
    schemas["Envelope"] = _envelope(settings)
    schemas["AmqpHeaders"] = _headers()
    data_refs = {}
    for event_type in sorted(EVENT_MODELS):
        title = REST_CONTRACTS.get(event_type)
        if title is None:
            title, made = _model_schemas(event_type)
            schemas.update(made)
        data_refs[event_type] = COMPONENTS + title
    messages = {_message_name(t): _message(t, data_refs[t]) for t in sorted(EVENT_MODELS)}
    channels: dict[str, Any] = {
        "events": {
            "address": names.events,
            "title": "the hub's events exchange",
            "description": "Every event the hub carries, published by the hub with routing key "
                           "<domain>.<event>.<agency>.<procedure> (codes' dots as '_', "
                           "'none' when absent). Ministries do not bind it: their queues are "
                           "filled by the hub.",
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": names.events, "type": "topic", "durable": True, "autoDelete": False,
                "vhost": vhost}, "bindingVersion": AMQP_BINDING}},
        },
    }
    operations: dict[str, Any] = {
        "publishEvents": {
            "action": "send", "channel": {"$ref": "#/channels/events"},
            "title": "the hub publishes every event it carries",
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True,
                                  "bindingVersion": AMQP_BINDING}},
        },
    }
    for s in subs:
        channel = f"subscription-{s.name}"
        proj = access.projections.get(s.projection)
        removed = {t: [p for p in access.personal.get(t, ())
                       if proj is None or p not in proj.keep.get(t, frozenset())]
                   for t in s.event_types}
        own = {}
        for t in s.event_types:
            note = (f"Projection {s.projection!r}: the hub removed "
                    f"{', '.join(removed[t]) or 'nothing'} from data before signing.")
            own[_message_name(t)] = _message(t, data_refs[t], note)
        channels[channel] = {
            "address": sn.queue(s.name),
            "title": f"{s.ministry}: subscription {s.name}",
            "description": (f"The queue of {s.ministry}'s subscription {s.name}: event types "
                            f"{', '.join(s.event_types)}; agencies {', '.join(s.agencies)}; "
                            f"procedures {', '.join(s.procedures)}. Filled by the hub with "
                            f"projected copies signed by the hub; rejected messages go to "
                            f"{sn.dead(s.name)}."),
            "messages": own,
            "bindings": {"amqp": {"is": "queue", "queue": {
                "name": sn.queue(s.name), "durable": True, "exclusive": False,
                "autoDelete": False, "vhost": vhost}, "bindingVersion": AMQP_BINDING}},
            "x-lienthong-routing-keys": s.patterns(),
            "x-lienthong-projection": {"name": s.projection, "removed": removed},
        }
        operations[f"receive-{s.name}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{channel}"},
            "title": f"{s.ministry} consumes {sn.queue(s.name)}",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in own],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}},
        }
    return {
        "asyncapi": "3.0.0",
        "id": f"urn:lienthong:{settings.hub_id}:{settings.name_prefix}",
        "info": {
            "title": "Liên Thông Hub: events and ministries' subscriptions",
            "version": __version__,
            "description": "Generated from the hub's live configuration (its subscriptions and "
                           "mappings). Every message is a CloudEvents 1.0 event signed by a "
                           "detached JWS in the lt-signature header; see the AmqpHeaders "
                           "schema for how to verify it.",
        },
        "servers": _servers(settings),
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {"ministryUser": {
                "type": "userPassword",
                "description": "the ministry's own RabbitMQ user (lienthong subscriptions "
                               "credentials): it may read its queues and nothing else"}},
        },
    }


def to_yaml(doc: dict[str, Any]) -> str:
    return str(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
