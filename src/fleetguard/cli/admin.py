"""Local administration over the data dir: operators and tokens (the audit log: ``audit``).

Whoever can read the data dir (master key, database) already holds every secret, so
these commands act directly on the database; each change is audited as ``cli:<user>``.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.common import DataDirOption, console, err_console, handles_errors, settings_from
from fleetguard.cli.output import Column, JsonOption, print_records, table_time
from fleetguard.core.errors import ValidationFailedError
from fleetguard.operators import Role

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

operator_app = typer.Typer(help="Operators: add, list, disable, reset MFA.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@contextmanager
def db_session(data_dir: Path | None) -> Iterator[Session]:
    from fleetguard.install import open_installation_database

    db = open_installation_database(settings_from(data_dir))
    try:
        with db.session() as session:
            yield session
    finally:
        db.dispose()


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        return password_file.read_text().strip()
    if not sys.stdin.isatty():
        line = sys.stdin.readline().strip()
        if not line:
            raise ValidationFailedError("no password given on standard input", field="password")
        return line
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValidationFailedError("the two passwords differ", field="password")
    return first


@operator_app.command("add")
@handles_errors
def operator_add(
    username: str,
    role: Annotated[Role, typer.Option(help="What the operator may do.")],
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file (else prompt/stdin).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add an operator (the password must pass the policy)."""
    from fleetguard.operators import service

    password = _read_password(password_file)
    with db_session(data_dir) as session:
        op = service.create_operator(
            session, username=username, password=password, role=role, actor=cli_actor(),
            issuer=None,
        )
    console.print(f"added {op.username} ({op.role.value})")


@operator_app.command("list")
@handles_errors
def operator_list(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """List operators with role, MFA and state."""
    from fleetguard.operators import service

    with db_session(data_dir) as session:
        ops = service.list_operators(session)
    print_records(
        ops,
        [Column("username", free=True), Column("role"), Column("mfa"), Column("state"),
         Column("created")],
        lambda op: [op.username, op.role.value, "yes" if op.mfa_enabled else "no",
                    "disabled" if op.disabled else "active", table_time(op.created_at)],
        as_json=as_json,
    )


def _set_operator_disabled(username: str, data_dir: Path | None, *, disabled: bool) -> None:
    from fleetguard.operators import service

    with db_session(data_dir) as session:
        service.set_operator_disabled(
            session, username=username, disabled=disabled, actor=cli_actor(), issuer=None
        )
    console.print(f"{'disabled' if disabled else 'enabled'} {username}")


@operator_app.command("disable")
@handles_errors
def operator_disable(username: str, data_dir: DataDirOption = None) -> None:
    """Disable an operator: their sessions end and their API tokens are revoked."""
    _set_operator_disabled(username, data_dir, disabled=True)


@operator_app.command("enable")
@handles_errors
def operator_enable(username: str, data_dir: DataDirOption = None) -> None:
    """Enable a disabled operator again (e.g. the admin locked out by a mistake)."""
    _set_operator_disabled(username, data_dir, disabled=False)


@operator_app.command("reset-mfa")
@handles_errors
def operator_reset_mfa(username: str, data_dir: DataDirOption = None) -> None:
    """Remove an operator's second factor; they enroll again at the next login."""
    from fleetguard.operators import service

    with db_session(data_dir) as session:
        service.reset_mfa(session, username=username, actor=cli_actor(), issuer=None)
    console.print(f"MFA reset for {username}")


@token_app.command("create")
@handles_errors
def token_create(
    username: Annotated[str, typer.Option("--operator", help="Operator the token acts for.")],
    name: Annotated[str, typer.Option(help="What the token is for.")],
    role: Annotated[Role | None, typer.Option(help="At most the operator's role.")] = None,
    days: Annotated[int, typer.Option(min=1, max=365, help="Lifetime in days.")] = 90,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API token; the secret is printed once."""
    from fleetguard.operators import tokens

    with db_session(data_dir) as session:
        issued = tokens.create_api_token(
            session, username=username, name=name, role=role, ttl=timedelta(days=days),
            actor=cli_actor(), issuer=None,
        )
    err_console.print(
        f"token {issued.info.token_id} for {issued.info.operator} "
        f"({issued.info.role.value}), expires {issued.info.expires_at:%Y-%m-%d}"
    )
    print(issued.token, flush=True)


@token_app.command("list")
@handles_errors
def token_list(
    username: Annotated[
        str | None, typer.Option("--operator", help="Only this operator's tokens.")
    ] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """List tokens (never their secrets); --json adds when and where each was last used."""
    from fleetguard.operators import tokens

    with db_session(data_dir) as session:
        listed = tokens.list_api_tokens(session, username=username)
    print_records(
        listed,
        [Column("id"), Column("operator", free=True), Column("role"), Column("state"),
         Column("expires"), Column("name", free=True)],
        lambda t: [t.token_id, t.operator, t.role.value, "revoked" if t.revoked_at else "active",
                   table_time(t.expires_at), t.name],
        as_json=as_json,
    )


@token_app.command("revoke")
@handles_errors
def token_revoke(token_id: str, data_dir: DataDirOption = None) -> None:
    """Revoke a token at once."""
    from fleetguard.operators import tokens

    with db_session(data_dir) as session:
        tokens.revoke_api_token(session, token_id=token_id, actor=cli_actor())
    console.print(f"revoked {token_id}")
