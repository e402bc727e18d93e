"""A ministry's consumer of its Liên Thông Hub subscription, with nothing but pika and joserfc
(and the standard library).

    python ministry_consumer.py --url 'amqp://USER:PASSWORD@HOST:5672/VHOST' \
        --queue lienthong.sub.bhxh --hub-cert lienthong.pem [--alg ES256] [--count N]

Every message is a CloudEvents 1.0 event (JSON) whose exact body bytes are signed by the hub:
the AMQP header ``lt-signature`` holds a detached compact JWS with an unencoded payload
(RFC 7515 + RFC 7797: ``<protected>..<signature>``). For each message this consumer:

1. reads the JWS protected header and accepts only the hub's key: ``kid`` must be the SHA-256
   thumbprint (base64url, unpadded) of the DER of the hub certificate it was given, ``alg`` the
   algorithm pinned for it;
2. verifies the signature over the body bytes as received (never re-serialised);
3. checks that the header's ``lt-id``, ``lt-type`` and ``lt-src`` are the event's id, type and
   source (a signature cannot be moved onto another message);
4. skips an id it processed already (the broker redelivers after a lost connection, and a
   replay sends history again with the original ids);
5. acknowledges after handling; a message that fails a check is rejected without requeue,
   which puts it in the subscription's dead letters for the hub's operators.

It prints one JSON line per event handled or rejected.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import ssl
import sys
from collections.abc import Callable
from typing import Any

import pika
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey


def thumbprint(cert_pem: str) -> str:
    """The kid the hub signs with: base64url(SHA-256(certificate DER)), unpadded."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def public_key(cert_pem: str, alg: str) -> ECKey | RSAKey | OKPKey:
    kind = {"ES256": ECKey, "RS256": RSAKey, "PS256": RSAKey, "EdDSA": OKPKey}[alg]
    return kind.import_key(cert_pem)  # type: ignore[attr-defined, no-any-return]


class Rejected(Exception):
    pass


class Verifier:
    def __init__(self, cert_pem: str, alg: str = "ES256") -> None:
        self.kid = thumbprint(cert_pem)
        self.alg = alg
        self.key = public_key(cert_pem, alg)
        # The hub's own protected members (iat, lt-id, lt-type, lt-src) are let through;
        # only the pinned algorithm is accepted.
        self.registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)

    def verify(self, body: bytes, token: Any, message_id: str | None) -> dict[str, Any]:
        if not isinstance(token, (str, bytes)) or not token:
            raise Rejected("no lt-signature header")
        token = token.decode() if isinstance(token, bytes) else token
        parts = token.split(".")
        if len(parts) != 3 or parts[1] != "":
            raise Rejected("lt-signature is not a detached compact JWS")
        try:
            header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        except ValueError:
            raise Rejected("the JWS protected header is not base64url JSON") from None
        if header.get("kid") != self.kid:
            raise Rejected(f"signed by kid {header.get('kid')!r}, not the hub's {self.kid}")
        if header.get("alg") != self.alg or header.get("b64") is not False:
            raise Rejected("alg is not the pinned one, or the payload is not unencoded")
        try:
            jws.deserialize_compact(token, self.key, payload=body, registry=self.registry)
        except JoseError as exc:
            raise Rejected(f"bad signature: {exc}") from None
        event: dict[str, Any] = json.loads(body)
        for member, attr in (("lt-id", "id"), ("lt-type", "type"), ("lt-src", "source")):
            if header.get(member) != event.get(attr):
                raise Rejected(f"the signature's {member} is not the event's {attr}")
        if message_id is not None and message_id != event.get("id"):
            raise Rejected("the AMQP message_id is not the event's id")
        return event


def consume(url: str, queue: str, verifier: Verifier, handle: Callable[[dict[str, Any]], None],
            *, count: int | None = None, processed: set[str] | None = None,
            idle_timeout: float | None = None) -> None:
    """Consume ``queue`` until ``count`` messages were taken (handled, skipped or rejected),
    or until nothing came for ``idle_timeout`` seconds, or forever."""
    processed = set() if processed is None else processed
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=100)
        for taken, (method, props, body) in enumerate(
                ch.consume(queue, inactivity_timeout=idle_timeout), 1):
            if method is None:
                break
            try:
                event = verifier.verify(body, (props.headers or {}).get("lt-signature"),
                                        props.message_id)
            except (Rejected, ValueError) as exc:
                print(json.dumps({"rejected": props.message_id, "why": str(exc)}), flush=True)
                ch.basic_reject(method.delivery_tag, requeue=False)
            else:
                if event["id"] in processed:
                    print(json.dumps({"duplicate": event["id"]}), flush=True)
                else:
                    handle(event)
                    processed.add(event["id"])
                ch.basic_ack(method.delivery_tag)
            if count is not None and taken >= count:
                break
        ch.cancel()
    finally:
        if conn.is_open:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="amqp://user:password@host:port/vhost")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--hub-cert", required=True, help="the hub's certificate (PEM)")
    parser.add_argument("--alg", default="ES256", choices=["ES256", "RS256", "PS256", "EdDSA"])
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without a message")
    args = parser.parse_args()
    with open(args.hub_cert, encoding="ascii") as fh:
        verifier = Verifier(fh.read(), args.alg)

    def handle(event: dict[str, Any]) -> None:
        print(json.dumps({"handled": event["id"], "type": event["type"],
                          "subject": event["subject"], "sequence": event.get("sequence"),
                          "data": event["data"]}, ensure_ascii=False), flush=True)

    consume(args.url, args.queue, verifier, handle, count=args.count,
            idle_timeout=args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
