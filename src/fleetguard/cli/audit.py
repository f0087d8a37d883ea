"""`fleetguard audit-log`: verify the keyed chain, print, export and check its head.

``verify``, ``head``, ``export-head`` and ``public-key`` open the installation with its
master key (the chain is keyed from it); ``check-head`` needs nothing but a head file and
the public key pinned earlier, so an auditor runs it off the box.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.common import DataDirOption, console, err_console, handles_errors, settings_from
from fleetguard.cli.output import JsonOption, print_json
from fleetguard.core.errors import ValidationFailedError

if TYPE_CHECKING:
    from fleetguard.auditlog import ChainHead, ChainVerification
    from fleetguard.store import Database

audit_app = typer.Typer(
    help="The keyed audit log: verify it; print, export and check its head.", no_args_is_help=True
)
_SEQ_HASH = re.compile(r"(\d+):([0-9a-f]{64})")


@contextmanager
def _installation(data_dir: Path | None) -> Iterator[Database]:
    from fleetguard.install import open_installation_database

    db = open_installation_database(settings_from(data_dir))
    try:
        yield db
    finally:
        db.dispose()


def _expected_head(value: str, trusted: list[bytes]) -> ChainHead:
    from fleetguard.auditlog import ChainHead, verify_signed_head

    if match := _SEQ_HASH.fullmatch(value.strip()):
        return ChainHead(int(match[1]), match[2])
    path = Path(value)
    if not path.is_file():
        raise ValidationFailedError(
            "--expect-head is SEQ:SHA256HEX or a head file written by export-head",
            field="expect-head",
        )
    return verify_signed_head(path.read_bytes(), trusted).head


def _report(result: ChainVerification, current_key: str) -> None:
    console.print(
        f"audit log intact: {result.entries_checked} entries, head "
        f"{result.head.seq}:{result.head.entry_hash}", highlight=False,
    )
    if result.key_ids:
        console.print(f"  keyed with audit key(s) {', '.join(result.key_ids)} "
                      f"(this installation's current key: {current_key})", highlight=False)
    if result.unkeyed_through:
        console.print(
            f"  entries 1..{result.unkeyed_through} were written before the chain was keyed "
            "(plain SHA-256): they are covered as they were when the keyed checkpoint at "
            f"entry {result.unkeyed_through + 1} was made, not before", highlight=False,
        )
    if result.anchored is not None:
        console.print(f"  contains the anchored head {result.anchored.seq}:"
                      f"{result.anchored.entry_hash}", highlight=False)


@audit_app.command("verify")
@handles_errors
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option(help="A head recorded earlier, as SEQ:HASH or a file written by "
                          "export-head; verify it is still in the chain."),
    ] = None,
    exported_head: Annotated[
        bool,
        typer.Option(help="Also check the signed head last exported to the data dir."),
    ] = True,
    data_dir: DataDirOption = None,
) -> None:
    """Check every entry's MAC and link; exit 1 and name the first bad entry if anything
    was changed, removed, or rewritten without the installation's key."""
    from fleetguard.auditlog import exported_head_path, session_keyring, verify_chain

    settings = settings_from(data_dir)
    with _installation(data_dir) as db, db.session() as session:
        keyring = session_keyring(session)
        trusted = [key.public_key for key in keyring.keys]
        anchors = []
        if expect_head:
            anchors.append(_expected_head(expect_head, trusted))
        local = exported_head_path(settings.data_dir)
        if exported_head and local.exists():
            anchors.append(_expected_head(str(local), trusted))
        result = verify_chain(session, anchors)
    if result.ok:
        _report(result, keyring.current.key_id)
        return
    err_console.print(f"[red]audit log TAMPERED[/red]: first bad entry {result.first_bad_seq}")
    for problem in result.problems:
        err_console.print(f"  {problem}", highlight=False)
    raise typer.Exit(1)


@audit_app.command("head")
@handles_errors
def audit_head(
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Print the head (SEQ:HASH) to keep somewhere outside the platform."""
    from fleetguard.auditlog import chain_head

    with _installation(data_dir) as db, db.session() as session:
        head = chain_head(session)
    if as_json:
        print_json(head)
    else:
        print(f"{head.seq}:{head.entry_hash}")


@audit_app.command("export-head")
@handles_errors
def audit_export_head(
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the signed head (default: audit-head.json in "
                          "the data dir)."),
    ] = None,
    syslog: Annotated[
        str | None,
        typer.Option(envvar="FLEETGUARD_SYSLOG_ADDRESS",
                     help="Syslog to send it to: /path (Unix socket), HOST:PORT (UDP) or "
                          "none (default: /dev/log when present)."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Sign the current head and export it (for cron): the data dir file, then syslog."""
    from fleetguard.auditlog import export_signed_head, exported_head_path, parse_syslog_address

    settings = settings_from(data_dir)
    address = parse_syslog_address(syslog)
    target = out or exported_head_path(settings.data_dir)
    with _installation(data_dir) as db:
        signed = export_signed_head(db, target, syslog_address=address)
    where = f"{target}" + (f" and syslog {address}" if address is not None else "")
    err_console.print(f"exported head {signed.seq} to {where}", highlight=False)
    print(f"{signed.seq}:{signed.entry_hash}", flush=True)


@audit_app.command("public-key")
@handles_errors
def audit_public_key(data_dir: DataDirOption = None) -> None:
    """Print the key that signs exported heads (base64), for auditors to pin."""
    from fleetguard.auditlog import session_keyring

    with _installation(data_dir) as db, db.read_session() as session:
        key = session_keyring(session).current
    print(base64.b64encode(key.public_key).decode(), flush=True)


@audit_app.command("check-head")
@handles_errors
def audit_check_head(
    head_file: Annotated[Path, typer.Argument(help="A head written by export-head.")],
    public_key: Annotated[
        list[str],
        typer.Option(help="A trusted head key (base64, from `public-key` or an earlier "
                          "export); repeat for several."),
    ],
) -> None:
    """Check a signed head off the box, with no data dir: the signature, and that its key
    is one of those given or endorsed by one of them. Prints SEQ:HASH."""
    from fleetguard.auditlog import verify_signed_head

    try:
        trusted = [base64.b64decode(k, validate=True) for k in public_key]
    except binascii.Error as exc:
        raise ValidationFailedError("--public-key is base64", field="public-key") from exc
    signed = verify_signed_head(head_file.read_bytes(), trusted)
    err_console.print(f"signature valid; exported {signed.exported_at} under key "
                      f"{signed.key_id}", highlight=False)
    print(f"{signed.seq}:{signed.entry_hash}", flush=True)
