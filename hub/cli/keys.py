"""``lienthong keys``: signing keys and the trust store.

Keys and certificates go to ``<data_dir>/keys``, trusted certificates to ``<data_dir>/trust``
(file names in ``hub.signing.keys`` and ``hub.signing.truststore``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from hub import settings as hub_settings
from hub.errors import HubError
from hub.settings import Settings
from hub.signing import keys as hub_keys
from hub.signing import pins
from hub.signing.truststore import TrustedKey, TrustStore

app = typer.Typer(
    help="Signing keys and the trust store: make a system's key and certificate, trust a "
    "peer's certificate, list what is trusted.",
    no_args_is_help=True,
)

# Certificates expiring within this many days are flagged by `keys list`.
EXPIRY_WARNING_DAYS = 30


class Alg(StrEnum):
    ES256 = "ES256"
    RS256 = "RS256"
    PS256 = "PS256"
    EdDSA = "EdDSA"
    Ed25519 = "Ed25519"


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The hub's data directory (keys in <dir>/keys, trusted certificates in "
        "<dir>/trust); default: LIENTHONG_DATA_DIR, else the settings' data_dir.",
        show_default=False,
        file_okay=False,
    ),
]


def _settings(data_dir: Path | None) -> Settings:
    try:
        return hub_settings.load(data_dir=data_dir) if data_dir else hub_settings.load()
    except ValidationError as exc:
        _fail(f"the settings are invalid: {exc}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _error(exc: HubError, option: str | None = None) -> NoReturn:
    _fail(f"{option}: {exc.message}" if option else exc.message)


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _mark(key: TrustedKey, now: datetime) -> str:
    if key.not_after <= now:
        return "EXPIRED"
    if key.not_before > now:
        return "NOT YET VALID"
    if key.not_after - now <= timedelta(days=EXPIRY_WARNING_DAYS):
        days = (key.not_after - now).days
        return f"expires in {days} day{'s' if days != 1 else ''}"
    return ""


@app.command()
def generate(
    system: Annotated[
        str,
        typer.Option(
            "--system",
            "-s",
            help="The system id, 'VN:GOV:<agency code>:<system>', e.g. "
            "'VN:GOV:000.00.00.H56:igate'; it becomes the certificate's CN.",
            show_default=False,
        ),
    ],
    alg: Annotated[
        Alg | None,
        typer.Option(
            "--alg",
            help="Signature algorithm: ES256 (EC P-256), RS256 or PS256 (RSA-2048, as the "
            "government PKI issues), EdDSA or Ed25519 (Ed25519 key). Default: the settings' "
            "default_algorithm (ES256).",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, help="Validity of the self-signed certificate.")
    ] = 365,
    csr: Annotated[
        bool,
        typer.Option(
            "--csr",
            help="Write a certificate signing request for the government CA instead of a "
            "self-signed certificate; install the issued certificate with `keys install`.",
        ),
    ] = False,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust/--no-trust",
            help="Also add the new certificate to this hub's trust store.",
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing key of this system (key rotation). Certificates already "
            "in the trust store stay trusted until they expire or you remove them.",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Make a key pair for a system, with a self-signed certificate (or a CSR)."""
    settings = _settings(data_dir)
    chosen = alg.value if alg is not None else settings.default_algorithm
    try:
        existing = hub_keys.KeyFiles.of(settings.keys_dir, system).key
    except HubError as exc:
        _error(exc, "--system")
    if existing.exists() and not force:
        _fail(
            f"a key for {system} already exists at {existing}; pass --force to replace it "
            "(key rotation)"
        )
    try:
        material = hub_keys.generate(system, chosen, days, csr=csr)
    except HubError as exc:
        _error(exc, "--system" if exc.field in ("system_id", "CN") else None)
    try:
        files = material.save(settings.keys_dir, overwrite=force)
    except HubError as exc:
        _error(exc)
    label = hub_keys.family_label(material.private_key)
    typer.echo(f"key          {files.key}  ({label}, {material.alg}, mode 0600)")
    if material.certificate is None:
        typer.echo(f"request      {files.csr}")
        typer.echo(
            "next: send the request to the CA; when it issues the certificate, run "
            "`lienthong keys install CERT.pem`"
        )
        return
    cert = material.certificate
    typer.echo(f"certificate  {files.certificate}")
    typer.echo(f"kid          {material.kid}")
    typer.echo(
        f"valid        {_day(cert.not_valid_before_utc)} .. {_day(cert.not_valid_after_utc)}"
    )
    if trust:
        added = _trust(settings, material.certificate_pem(), material.alg)
        typer.echo(f"trusted      {added.path}")
    typer.echo(f"give peers the certificate: lienthong keys trust {files.certificate}")


def _trust(settings: Settings, pem: bytes, alg: str | None) -> TrustedKey:
    try:
        return TrustStore(settings.trust_dir).add(pem, alg=alg)
    except HubError as exc:
        _error(exc)


@app.command("trust")
def trust_certificate(
    file: Annotated[
        Path,
        typer.Argument(
            help="A peer's PEM certificate; its CN must be the peer's system id.",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    alg: Annotated[
        Alg | None,
        typer.Option(
            "--alg",
            help="Pin the certificate to this algorithm (e.g. PS256 for an RSA key that signs "
            "with PSS). Default: by key type, EC P-256 ES256, RSA RS256, Ed25519 EdDSA.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Trust a peer's certificate: messages signed with its key are accepted from its system."""
    settings = _settings(data_dir)
    key = _trust(settings, file.read_bytes(), alg.value if alg is not None else None)
    typer.echo(f"trusted {key.system_id}")
    typer.echo(f"  kid    {key.kid}")
    typer.echo(f"  alg    {key.alg}")
    typer.echo(f"  valid  {_day(key.not_before)} .. {_day(key.not_after)}")
    typer.echo(f"  file   {key.path}")


@app.command("install")
def install(
    file: Annotated[
        Path,
        typer.Argument(
            help="The certificate the CA issued from a `keys generate --csr` request.",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    trust: Annotated[
        bool,
        typer.Option("--trust/--no-trust", help="Also add it to this hub's trust store."),
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Install a CA-issued certificate beside the key it was requested for."""
    settings = _settings(data_dir)
    try:
        path = hub_keys.install_certificate(settings.keys_dir, file.read_bytes())
        cert = hub_keys.load_certificate(path)
        # The signer's algorithm, if pinned when the key was made (PS256), holds for peers too.
        alg = pins.read_pins(settings.keys_dir).get(hub_keys.system_id_of(cert))
    except HubError as exc:
        _error(exc)
    typer.echo(f"certificate  {path}")
    typer.echo(f"kid          {hub_keys.kid_of(cert)}")
    if trust:
        added = _trust(settings, path.read_bytes(), alg)
        typer.echo(f"trusted      {added.path}")


@app.command("list")
def list_keys(data_dir: DataDir = None) -> None:
    """List the trusted certificates, flagging expired ones and those expiring within 30 days."""
    settings = _settings(data_dir)
    try:
        store = TrustStore(settings.trust_dir)
    except HubError as exc:
        _error(exc)
    entries = store.entries()
    if not entries:
        typer.echo(
            f"the trust store {settings.trust_dir} is empty; add certificates with "
            "`lienthong keys trust FILE.pem` or `lienthong keys generate --system ID`"
        )
        return
    now = datetime.now(UTC)
    rows = [("SYSTEM", "KID", "ALG", "VALID FROM", "VALID UNTIL", "")]
    rows += [
        (k.system_id, k.kid, k.alg, _day(k.not_before), _day(k.not_after), _mark(k, now))
        for k in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[5]]).rstrip())
