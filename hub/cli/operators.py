"""``lienthong operators``: console operators (hub.console.accounts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from hub.errors import HubError

if TYPE_CHECKING:
    from hub.console.accounts import Accounts

app = typer.Typer(help="Console operators: add, list, disable, reset.", no_args_is_help=True)

ROLE_HELP = "viewer (looks, personal data masked), operator (replays, edits, discards), admin"


def _accounts() -> Accounts:
    from hub.console.accounts import Accounts
    from hub.settings import load
    from hub.store import Store

    settings = load()
    return Accounts(Store.open(settings.store_url), settings.console_session_ttl)


def _password(given: str | None) -> str:
    if given:
        return given
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@app.command()
def add(username: str,
        role: str = typer.Option("viewer", "--role", help=ROLE_HELP),
        password: str | None = typer.Option(
            None, "--password", envvar="LIENTHONG_OPERATOR_PASSWORD",
            help="Prompted for when not given (at least 12 characters).")) -> None:
    """Add an operator."""
    accounts = _accounts()
    try:
        accounts.add(username, _password(password), role)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        accounts.store.close()
    typer.echo(f"operator {username} added ({role})")


@app.command("list")
def list_() -> None:
    """List operators: name, role, enabled or disabled."""
    accounts = _accounts()
    try:
        for a in accounts.list():
            typer.echo(f"{a.username}\t{a.role}\t{'disabled' if a.disabled else 'enabled'}")
    finally:
        accounts.store.close()


@app.command()
def disable(username: str) -> None:
    """Disable an operator (signed out at once; the audit trail keeps the name)."""
    accounts = _accounts()
    try:
        accounts.disable(username)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        accounts.store.close()
    typer.echo(f"operator {username} disabled")


@app.command()
def reset(username: str,
          role: str | None = typer.Option(None, "--role", help=ROLE_HELP),
          password: str | None = typer.Option(
              None, "--password", envvar="LIENTHONG_OPERATOR_PASSWORD")) -> None:
    """Set a new password (and role), enable the operator again, end its sessions."""
    accounts = _accounts()
    try:
        accounts.reset(username, _password(password), role)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        accounts.store.close()
    typer.echo(f"operator {username} reset")
