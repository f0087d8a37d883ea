"""`fleetguard broker`: run Mosquitto for the fleet, with per-device permissions kept in sync."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from fleetguard.cli.common import DataDirOption, console, handles_errors, settings_from


@handles_errors
def broker_command(
    data_dir: DataDirOption = None,
    host: Annotated[
        str, typer.Option(help="Address the MQTT TLS listener binds to (0.0.0.0: all).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port of the MQTT TLS listener.")] = 8883,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Write the broker files, print mosquitto.conf for an external broker, exit.",
        ),
    ] = False,
    run_as: Annotated[
        str | None,
        typer.Option(help="Account mosquitto runs as when this runs as root (default: "
                          "mosquitto, or root if that account cannot reach the data dir)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run Mosquitto with mutual TLS and per-device permissions until Ctrl-C.

    Each device may publish only under fg/d/<its uuid>/ and subscribe only to its
    command topic; a revoked, decommissioned or suspended device is cut off within
    seconds. Started by root, mosquitto runs as the mosquitto account, which may read only
    the broker's own certificate and key, the CA bundle, the CRL and its own config and state;
    otherwise it runs as the account running this command.
    """
    from fleetguard.broker import (
        BrokerConfig,
        broker_process,
        ensure_mosquitto,
        prepare_broker,
        run_broker_sync,
    )
    from fleetguard.broker.errors import BrokerStartError
    from fleetguard.core.logging import configure_logging
    from fleetguard.identity.ca import open_installation_ca
    from fleetguard.install import open_installation_database
    from fleetguard.keys import load_master_key

    settings = settings_from(data_dir)
    # First the installation: before `init` the one line says what to run, and nothing
    # (logging included) is set up.
    master = load_master_key(settings)
    configure_logging("text", log_level)
    config = BrokerConfig(host=host, port=port, run_as=run_as)
    if not print_config:
        config = BrokerConfig(host=host, port=port, run_as=run_as,
                              mosquitto=ensure_mosquitto(config))
    with open_installation_ca(settings, master) as ca:
        if print_config:
            files = prepare_broker(settings, ca, config)
            print(files.config_file.read_text(), end="", flush=True)
            return
        db = open_installation_database(settings, master_key=master)
        files = prepare_broker(settings, ca, config, db=db)
        stop = threading.Event()

        def _on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        # Ctrl-C and SIGTERM both end the loop; the with-blocks then stop everything.
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with (
                broker_process(files, config) as process,
                run_broker_sync(db, files, process=process, ca=ca) as sync,
            ):
                console.print(f"broker listening on {host}:{port} (mutual TLS) as "
                              f"{files.run_as}; "
                              f"{sync.sync.last_report.entitled if sync.sync.last_report else 0}"
                              " devices entitled; Ctrl-C stops it")
                while not stop.wait(0.5):
                    if not process.running:
                        raise BrokerStartError(
                            f"mosquitto stopped unexpectedly; see {files.log_file}"
                        )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            db.dispose()
    console.print("broker stopped")
