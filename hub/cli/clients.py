"""``lienthong clients``: the upstream systems allowed to call the hub (mappings/clients.toml).

Secrets are never stored: ``add`` prints a fresh API key (and OAuth2 client secret) once, for
the system's operator, and the TOML block with their SHA-256 digests for the clients file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.api.auth import ClientRegistry, callback_name_problem, new_secret, sha256_hex
from hub.envelope import check_source
from hub.errors import HubError
from hub.settings import Settings

app = typer.Typer(
    help="Upstream systems allowed to call the hub: add one (fresh key and its hash), hash a "
    "key, check the clients file.",
    no_args_is_help=True,
)


def _toml_list(values: list[str]) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def client_block(system_id: str, name: str, types: list[str], agencies: list[str], *,
                 api_key: str | None, oauth_client_id: str | None, oauth_secret: str | None,
                 cert_sha256: list[str], require_certificate: bool = False,
                 callbacks: list[str] | None = None) -> str:
    lines = [
        "[[clients]]",
        f"system_id = {json.dumps(system_id)}",
        f"name = {json.dumps(name, ensure_ascii=False)}",
        f"allowed_types = {_toml_list(types)}",
        f"allowed_agencies = {_toml_list(agencies)}",
    ]
    if callbacks:
        lines.append(f"callbacks = {_toml_list(callbacks)}")
    if api_key is not None:
        lines.append(f"api_key_sha256 = {_toml_list([sha256_hex(api_key)])}")
    if oauth_client_id is not None and oauth_secret is not None:
        lines.append(f"oauth_client_id = {json.dumps(oauth_client_id)}")
        lines.append(f"oauth_secret_sha256 = {json.dumps(sha256_hex(oauth_secret))}")
    if cert_sha256:
        fingerprints = [c.replace(":", "").lower() for c in cert_sha256]
        lines.append(f"cert_sha256 = {_toml_list(fingerprints)}")
    if require_certificate:
        lines.append("require_certificate = true")
    return "\n".join(lines) + "\n"


def _fail(error: HubError) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


@app.command()
def add(
    system_id: Annotated[str, typer.Option(help="X-Road style id, VN:GOV:<agency>:<system>")],
    name: Annotated[str, typer.Option(help="human name of the system")],
    agency: Annotated[list[str], typer.Option(
        help="agency code it may act for (repeat; '000.00.00.H56*' for a prefix, '*' any); "
             "also bounds what its callbacks may touch")],
    type_: Annotated[list[str] | None, typer.Option(
        "--type", help="event type it may send (repeat; 'vn.gov.dossier.*' for a prefix)")]
    = None,
    callback: Annotated[list[str] | None, typer.Option(
        help="adapter whose callback it may call, POST /v1/callbacks/<name> (repeat; exact "
             "names): the provincial system's status updates, say. Callbacks whose adapter "
             "checks a proof of its own (a checksum, a token) need no client")] = None,
    api_key: Annotated[bool, typer.Option(help="generate an API key")] = True,
    oauth_client_id: Annotated[str | None, typer.Option(
        help="also allow OAuth2 client credentials under this client id")] = None,
    cert_sha256: Annotated[list[str] | None, typer.Option(
        help="SHA-256 fingerprint of its client certificate (repeat), as the TLS terminator "
             "passes it on; alone it is a credential of its own")] = None,
    require_certificate: Annotated[bool, typer.Option(
        help="require the certificate (--cert-sha256) with the API key or bearer token on "
             "every request, rather than either one: a leaked key alone is then not enough")]
    = False,
) -> None:
    """Print the clients.toml block for a new upstream system, with fresh credentials."""
    try:
        check_source(system_id, "system_id")
    except HubError as exc:
        _fail(exc)
    if not type_ and not callback:
        typer.echo("error: the client may do nothing; give the event types it may send "
                   "(--type) or the callbacks it may call (--callback)", err=True)
        raise typer.Exit(2)
    for system in callback or []:
        problem = callback_name_problem(system)
        if problem is not None:
            typer.echo(f"error: --callback {problem}", err=True)
            raise typer.Exit(2)
    key = new_secret() if api_key else None
    secret = new_secret() if oauth_client_id else None
    if key is None and secret is None and not cert_sha256:
        typer.echo("error: the client needs a credential: an API key, --oauth-client-id or "
                   "--cert-sha256", err=True)
        raise typer.Exit(2)
    if require_certificate and not cert_sha256:
        typer.echo("error: --require-certificate needs the certificate's fingerprint; give "
                   "--cert-sha256", err=True)
        raise typer.Exit(2)
    if require_certificate and key is None and secret is None:
        typer.echo("error: --require-certificate requires the certificate with an API key or "
                   "OAuth2 client, and this client has neither; drop --no-api-key or give "
                   "--oauth-client-id", err=True)
        raise typer.Exit(2)
    typer.echo("# Give these to the system's operator over a safe channel; the hub keeps only "
               "their SHA-256:", err=True)
    if key is not None:
        typer.echo(f"#   API key (header X-API-Key): {key}", err=True)
    if secret is not None:
        typer.echo(f"#   OAuth2 client id: {oauth_client_id}  client secret: {secret}", err=True)
    typer.echo("# Append this block to the clients file (Settings.clients_file):", err=True)
    typer.echo(client_block(system_id, name, type_ or [], agency, api_key=key,
                            oauth_client_id=oauth_client_id, oauth_secret=secret,
                            cert_sha256=cert_sha256 or [],
                            require_certificate=require_certificate, callbacks=callback))


@app.command("hash")
def hash_(
    secret: Annotated[str | None, typer.Argument(
        help="the key or secret; read from standard input when left out (keeps it out of "
             "the shell history)")] = None,
) -> None:
    """Print the SHA-256 hex digest of an API key or client secret, as clients.toml keeps it."""
    value = secret if secret is not None else sys.stdin.readline().rstrip("\r\n")
    typer.echo(sha256_hex(value))


@app.command()
def check(
    path: Annotated[Path | None, typer.Argument(help="clients file [settings.clients_file]")]
    = None,
) -> None:
    """Read the clients file and list its systems and what they may send."""
    try:
        registry = ClientRegistry.load(path or Settings().clients_file)
    except HubError as exc:
        _fail(exc)
    if not registry.clients:
        typer.echo("no clients: the hub accepts no upstream system (add them with "
                   "`lienthong clients add`)")
    for client in registry.clients:
        needs = "  [certificate required with key/token]" if client.require_certificate else ""
        typer.echo(f"{client.system_id}  ({client.name}){needs}")
        typer.echo(f"    types:    {', '.join(sorted(client.allowed_types)) or '(none)'}")
        typer.echo(f"    agencies: {', '.join(sorted(client.allowed_agencies)) or '(none)'}")
        if client.allowed_callbacks:
            typer.echo(f"    callbacks: {', '.join(sorted(client.allowed_callbacks))}")
