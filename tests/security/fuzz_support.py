"""Schemathesis against the real operator API, over real HTTP on loopback.

Shared by ``tests/security/test_api_fuzz.py`` (a short run) and ``benchmarks/fuzz_api.py``
(10,000 requests and more), so both test the same thing the same way:

- a fresh data dir, SQLite database, master key and fleet CA; the app from
  ``create_operator_app`` served by uvicorn on 127.0.0.1 and a free port, in a thread (a real
  socket: a response cut off mid-body shows only there);
- the OpenAPI document as the server serves it (``/api/v1/openapi.json``, authenticated);
- every operation, every phase (examples, coverage, fuzzing, and the stateful phase over
  the links schemathesis infers), a fixed seed, one worker, and the checks the issue
  counts: server errors, response schemas, documented status codes, content types and
  headers, valid data accepted, invalid data refused, ``Allow`` on 405, use after free and
  resource availability, ignored authentication;
- as an admin, through an API token.

The fuzzer calls destructive operations too. Nothing is excluded: it may revoke its own
token or disable its own operator (it lists both). The harness notices a refused
credential (a 401 to its own token) and carries on with a fresh token, enabling its
operator again first if needed, through the services (as local administration); the
refusals that led to the repair are documented 401s and are counted as ``repairs``.

No traffic leaves this machine. Server-run scans (``POST /api/v1/scans`` with targets)
are confined to 127.0.0.1 by the scope of the app's scan jobs (``server.scan_scope``:
anything else, host names included, is a 422 before any lookup), and the scanner itself is replaced by one that
contacts nothing (a scan of loopback would spend the shared cores on probes that tell the
API fuzzer nothing); ``real_scans=True`` runs the real scanner, on 127.0.0.1 only. Under
both, a process-wide audit hook refuses, for the duration of the run, every connect,
send and name lookup of this process to anything but loopback, and records it: the
run fails if it recorded any.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

#: Categories the issue counts, and the schemathesis checks behind each.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "server_errors": ("not_a_server_error",),
    "schema_violations": ("response_schema_conformance",),
    "undocumented_statuses": ("status_code_conformance",),
    "valid_refused": ("positive_data_acceptance",),
    "invalid_accepted": ("negative_data_rejection",),
    "wrong_allow": ("unsupported_method", "allow_header_conformance"),
    "content_types": ("content_type_conformance",),
    "headers": ("response_headers_conformance", "missing_required_header"),
    "stateful": ("use_after_free", "ensure_resource_availability"),
    "auth": ("ignored_auth",),
}
CHECKS = tuple(name for names in CATEGORIES.values() for name in names)
#: Printed in this order. ``other``: a check outside the categories above (none today);
#: ``responses_5xx``: every 5xx the server sent (``server_errors`` counts them once per
#: operation, as schemathesis does); ``cut_off``: responses that started and never
#: finished; ``errors``: requests that got no response, and engine errors;
#: ``off_machine``: network access the guard refused.
REPORTED = ("requests", *CATEGORIES, "other", "responses_5xx", "cut_off", "errors",
            "off_machine")

ADMIN = "fuzz-admin"
LOOPBACK_SCOPE = ("127.0.0.1/32",)

#: Refusals of schema-valid input that no schema can prevent, so they are waived (and
#: counted as such) rather than counted as valid requests refused: (operation or "*",
#: field the 422 names ("*": any), or a prefix ending in ".*", why).
WAIVED_REFUSALS: tuple[tuple[str, str, str], ...] = (
    ("*", "cursor", "a page cursor is valid only as the server gave it out (next_cursor)"),
    ("POST /api/v1/devices/import", "csv",
     "a CSV's header and rows are checked beyond what a string's schema can say"),
    ("POST /api/v1/scans", "report.*",
     "an uploaded fleetguard.scan/1 report is checked by protocol.scan_report.parse_scan_report "
     "(whose schema is not published, and has rules across fields)"),
    ("POST /api/v1/scans", "targets",
     "targets must resolve, and here lie within 127.0.0.1 (the scan jobs' scope)"),
    ("POST /api/v1/scan-schedules", "targets",
     "targets must resolve, and here lie within 127.0.0.1 (the scan jobs' scope)"),
    ("POST /api/v1/scans", "ports", "port lists have numeric ranges a pattern cannot bound"),
    ("POST /api/v1/scan-schedules", "ports",
     "port lists have numeric ranges a pattern cannot bound"),
    ("PUT /api/v1/detection/rulesets/fleet", "*",
     "a rule set is checked by detect.parse_ruleset (rule kinds, ids, features, the fields each kind takes) beyond the document the body's schema shows"),
    ("POST /api/v1/detection/rulesets/fleet/dry-run", "*",
     "a rule set is checked by detect.parse_ruleset (rule kinds, ids, features, the fields each kind takes) beyond the document the body's schema shows"),
    ("PUT /api/v1/detection/rulesets/groups/{group}", "*",
     "a rule set is checked by detect.parse_ruleset (rule kinds, ids, features, the fields each kind takes) beyond the document the body's schema shows"),
    ("POST /api/v1/detection/rulesets/groups/{group}/dry-run", "*",
     "a rule set is checked by detect.parse_ruleset (rule kinds, ids, features, the fields each kind takes) beyond the document the body's schema shows"),
    ("POST /api/v1/notifications/destinations", "host",
     "a destination's address is judged (metadata, link-local and unspecified never; private and loopback by flag) and a CA bundle parsed, beyond a schema"),
    ("POST /api/v1/notifications/destinations", "url",
     "a destination's address is judged (metadata, link-local and unspecified never; private and loopback by flag) and a CA bundle parsed, beyond a schema"),
    ("POST /api/v1/notifications/destinations", "ca_pem",
     "a destination's address is judged (metadata, link-local and unspecified never; private and loopback by flag) and a CA bundle parsed, beyond a schema"),
    ("PATCH /api/v1/notifications/destinations/{destination_id}", "host",
     "a destination's address is judged (metadata, link-local and unspecified never; private and loopback by flag) and a CA bundle parsed, beyond a schema"),
    ("PATCH /api/v1/notifications/destinations/{destination_id}", "url",
     "a destination's address is judged (metadata, link-local and unspecified never; private and loopback by flag) and a CA bundle parsed, beyond a schema"),
    ("PATCH /api/v1/notifications/destinations/{destination_id}", "ca_pem",
     "a destination's address is judged (metadata, link-local and unspecified never; private and loopback by flag) and a CA bundle parsed, beyond a schema"),
)


# --- no traffic off this machine --------------------------------------------------------


class OffMachineTrafficError(PermissionError):
    """Raised inside the code that tried to reach an address other than loopback."""


def _loopback_host(host: object) -> bool:
    if host is None or host in ("", b""):
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class LoopbackGuard:
    """A process-wide audit hook that, while armed, refuses network access off loopback.

    Audit hooks cannot be removed, so the hook stays installed once added and does
    nothing while disarmed: tests that run later in the same process are unaffected.
    """

    _installed = False
    _armed = 0
    _lock = threading.Lock()
    blocked: list[str] = []  # one process-wide record: the hook is process-wide

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if not cls._armed or not event.startswith("socket."):
            return
        host: object = None
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            address = args[1] if len(args) > 1 else None
            if not isinstance(address, tuple) or not address:
                return  # a Unix socket path, or no address (a connected socket)
            host = address[0]
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                       "socket.getnameinfo"):
            first = args[0] if args else None
            host = first[0] if isinstance(first, tuple) else first
        else:
            return
        if not _loopback_host(host):
            what = f"{event} {host!r}"
            cls.blocked.append(what)
            raise OffMachineTrafficError(f"refused off-machine network access: {what}")

    @classmethod
    @contextlib.contextmanager
    def armed(cls) -> Iterator[list[str]]:
        with cls._lock:
            if not cls._installed:
                sys.addaudithook(cls._hook)
                cls._installed = True
            cls._armed += 1
        start = len(cls.blocked)
        seen: list[str] = []
        try:
            yield seen
        finally:
            with cls._lock:
                cls._armed -= 1
            seen.extend(cls.blocked[start:])


# --- the server under test --------------------------------------------------------------


@dataclass
class ServerLog:
    """What the server saw, counted around the whole app (outside every middleware)."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    cut_off: list[str] = field(default_factory=list)


class _Watch:
    """ASGI wrapper: counts requests and statuses, notices a response that started and
    never finished (the client sees a cut download), and a 401 to the fuzzer's token."""

    def __init__(self, app: Any, log: ServerLog, on_refused: Callable[[str], None]) -> None:
        self.app = app
        self.log = log
        self.on_refused = on_refused

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        finished = False

        async def watch(message: Any) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        query = scope.get("query_string", b"").decode("latin-1")
        what = f"{scope.get('method')} {scope.get('path')}" + (f"?{query}" if query else "")
        try:
            await self.app(scope, receive, watch)
        finally:
            self.log.requests += 1
            self.log.statuses[status or 0] += 1
            if status is not None and status >= 500:
                self.log.server_errors.append(f"{what} -> {status}")
            if status is not None and not finished:
                self.log.cut_off.append(f"{what} -> {status}, body cut off")
            if status == 401:
                for name, value in scope.get("headers", []):
                    if name == b"authorization":
                        self.on_refused(value.decode("latin-1"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NoProbeScanner:
    """Stands in for ``fleetguard.scan.run_scan`` as the scan jobs' scanner: contacts nothing, reports every target
    down. Refuses (as the job's failure) any target outside the loopback scope."""

    def __call__(self, options: Any, progress: Any = None) -> Any:
        import datetime as dt

        from fleetguard.scan.models import ScanReport

        for target in options.targets:
            if not ipaddress.ip_address(target.address).is_loopback:
                LoopbackGuard.blocked.append(f"scan of {target.address}")
                raise OffMachineTrafficError(f"scan of {target.address} refused")
        if progress is not None:
            progress.start(len(options.targets))
            progress.advance(len(options.targets))
        now = dt.datetime.now(dt.UTC)
        return ScanReport(targets=[t.address for t in options.targets], started=now,
                          finished=now, hosts=[], findings=[], notes=[],
                          options={"ports": len(options.ports)})


class FuzzServer:
    """The operator API on 127.0.0.1 with an admin token for the fuzzer; a context manager."""

    def __init__(self, *, real_scans: bool = False, data_dir: Path | None = None) -> None:
        self.real_scans = real_scans
        self._data_dir = data_dir
        self.log = ServerLog()
        self.repairs: list[str] = []
        self._token = ""
        self._token_lock = threading.Lock()
        self._stale: set[str] = set()
        self._stack = contextlib.ExitStack()
        self.base_url = ""

    # credentials ---------------------------------------------------------------------

    def _mint_token(self) -> str:
        from fleetguard.operators import service as operators
        from fleetguard.operators import tokens

        with self.db.session() as session:
            op = operators.get_operator(session, ADMIN)
            if op.disabled:
                operators.set_operator_disabled(
                    session, username=ADMIN, disabled=False, actor="fuzz-harness", issuer=None,
                )
            issued = tokens.create_api_token(
                session, username=ADMIN, name=f"fuzz-{secrets.token_hex(3)}", role=None,
                ttl=timedelta(days=1), actor="fuzz-harness", issuer=None,
            )
        return str(issued.token)

    def _refused(self, header: str) -> None:
        with self._token_lock:
            if header == f"Bearer {self._token}":
                self._stale.add(self._token)

    def token(self) -> str:
        """The fuzzer's current token; a new one once the server refused the last."""
        with self._token_lock:
            if self._token and self._token not in self._stale:
                return self._token
            old = self._token
        fresh = self._mint_token()
        with self._token_lock:
            self._token = fresh
            if old:
                self.repairs.append(f"token {old.split('_')[1]} refused; minted another")
        return fresh

    # lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FuzzServer:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        import uvicorn

        from fleetguard.auditlog import attach_audit_keys
        from fleetguard.core.config import Settings
        from fleetguard.identity.ca import init_installation_ca
        from fleetguard.keys import MasterKey
        from fleetguard.operators import Role
        from fleetguard.operators import service as operators
        from fleetguard.scan import run_scan
        from fleetguard.server.operator_app import create_operator_app
        from fleetguard.server.scan_jobs import ScanJobs
        from fleetguard.server.scan_scope import ScanScope
        from fleetguard.store import open_database, upgrade_database

        stack = self._stack
        if self._data_dir is None:
            self._data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="fleetguard-fuzz-")))
        data_dir = self._data_dir
        settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'fg.db'}")
        master_key = MasterKey(secrets.token_bytes(32))
        self.db = open_database(settings.database_url)
        stack.callback(self.db.dispose)
        upgrade_database(self.db)
        attach_audit_keys(self.db, master_key)
        ca = stack.enter_context(init_installation_ca(settings, master_key))
        with self.db.session() as session:
            operators.create_operator(
                session, username=ADMIN, password="Fg-" + secrets.token_urlsafe(18),
                role=Role.ADMIN, actor="fuzz-harness", issuer=None,
            )

        # Scans: loopback only, and by default no probes at all.
        scan_jobs = ScanJobs(self.db, scope=ScanScope.of(LOOPBACK_SCOPE),
                             scanner=run_scan if self.real_scans else _NoProbeScanner())
        stack.callback(scan_jobs.wait_for_scans, 120.0)

        app = create_operator_app(settings, db=self.db, master_key=master_key, ca=ca,
                                  scan_jobs=scan_jobs, tls=False)
        port = _free_port()
        config = uvicorn.Config(
            _Watch(app, self.log, self._refused), host="127.0.0.1", port=port,
            log_level="critical", access_log=False, lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fuzz-uvicorn", daemon=True)
        thread.start()

        def stop() -> None:
            server.should_exit = True
            thread.join(30)

        stack.callback(stop)
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{port}"

    def openapi(self) -> dict[str, Any]:
        r = httpx.get(f"{self.base_url}/api/v1/openapi.json",
                      headers={"Authorization": f"Bearer {self.token()}"}, timeout=30)
        r.raise_for_status()
        document: dict[str, Any] = r.json()
        return document


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One unique failure (schemathesis counts one per operation and kind of failure)."""

    category: str
    check: str
    operation: str  # "GET /api/v1/devices/{device_id}"
    kind: str  # schemathesis's failure class and key, e.g. "UndefinedStatusCode:401"
    detail: str  # what failed, the request and the response, on one line

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes it unique, across runs too."""
        return (self.category, self.check, self.operation, self.kind)


@dataclass
class FuzzReport:
    requests: int = 0  # requests the server answered
    cases: int = 0  # test cases schemathesis generated
    counts: Counter[str] = field(default_factory=Counter)
    found: list[Found] = field(default_factory=list)  # unique failures
    cut_off: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    off_machine: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    waived: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    cases_by_phase: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    operations: int = 0

    def count(self, category: str) -> int:
        if category == "requests":
            return self.requests
        if category == "cut_off":
            return len(self.cut_off)
        if category == "errors":
            return len(self.errors)
        if category == "off_machine":
            return len(self.off_machine)
        if category == "responses_5xx":
            # 0: the app gave no response at all (the server answered 500 for it)
            return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)
        return self.counts[category]

    def summary(self) -> str:
        lines = [f"{name:>22}: {self.count(name):,}" for name in REPORTED]
        lines.append(f"{'test cases':>22}: {self.cases:,}")
        lines.append(f"{'operations':>22}: {self.operations}")
        lines.append(f"{'cases by phase':>22}: " + ", ".join(
            f"{phase} {n:,}" for phase, n in self.cases_by_phase.items()))
        lines.append(f"{'credential repairs':>22}: {len(self.repairs)}")
        lines.append(f"{'waived refusals':>22}: {len(self.waived)} "
                     f"({', '.join(sorted(set(self.waived)))})")
        lines.append(f"{'seconds':>22}: {self.seconds:.1f}")
        lines.append(f"{'statuses':>22}: " + ", ".join(
            f"{s}x{n}" for s, n in sorted(self.statuses.items())))
        return "\n".join(lines)

    def operations_failing(self, category: str) -> set[str]:
        return {f.operation for f in self.found if f.category == category}

    def details(self) -> str:
        out = [f"[{f.category}] {f.detail}" for f in self.found]
        out += [f"[cut_off] {c}" for c in self.cut_off]
        out += [f"[errors] {e}" for e in self.errors]
        out += [f"[off_machine] {o}" for o in self.off_machine]
        return "\n".join(out)


def _category(check: str) -> str:
    for category, names in CATEGORIES.items():
        if check in names:
            return category
    return "other"


def _config(base_url: str, *, seed: int, max_examples: int, stateful_examples: int,
            max_steps: int, phases: tuple[str, ...]) -> Any:
    from schemathesis.config import SchemathesisConfig

    checks: dict[str, Any] = {"enabled": False}
    for name in CHECKS:
        checks[name] = {"enabled": True}
    return SchemathesisConfig.from_dict({
        "seed": seed,
        "base-url": base_url,
        "workers": 1,
        "continue-on-failure": True,
        "request-timeout": 30,
        "cache": {"enabled": False},
        "generation": {"max-examples": max_examples, "database": "none", "no-shrink": True},
        "checks": checks,
        "phases": {
            "examples": {"enabled": "examples" in phases},
            "coverage": {"enabled": "coverage" in phases},
            "fuzzing": {"enabled": "fuzzing" in phases},
            "stateful": {"enabled": "stateful" in phases, "max-steps": max_steps,
                         "generation": {"max-examples": stateful_examples, "database": "none",
                                        "no-shrink": True}},
        },
    })


def run_fuzz(
    server: FuzzServer,
    *,
    seed: int,
    max_examples: int,
    stateful_examples: int,
    max_steps: int = 10,
    phases: tuple[str, ...] = ("examples", "coverage", "fuzzing", "stateful"),
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """One schemathesis run against ``server``; unique failures per category.

    ``max_examples``: examples per operation in the fuzzing phase (the coverage phase
    sends its own fixed set, about 1,800 requests here); ``stateful_examples``: scenarios
    of the stateful phase, each of up to ``max_steps`` linked calls.
    """
    import schemathesis
    from schemathesis.engine import events, from_schema

    config = _config(server.base_url, seed=seed, max_examples=max_examples,
                     stateful_examples=stateful_examples, max_steps=max_steps, phases=phases)
    schema = schemathesis.openapi.from_dict(server.openapi(), config=config)

    class Token:
        def get(self, case: Any, ctx: Any) -> str:
            return server.token()

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"

    schema.auth(refresh_interval=None)(Token)
    waived: list[str] = []

    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        """Keep every failure but the waived refusals (WAIVED_REFUSALS)."""
        if type(failure).__name__ != "RejectedPositiveData" or response.status_code != 422:
            return True
        try:
            field_name = response.json()["error"].get("field")
        except (ValueError, KeyError, TypeError, AttributeError):
            return True
        operation = f"{case.method.upper()} {case.operation.path}"
        for where, name, _why in WAIVED_REFUSALS:
            matches = name in ("*", field_name) or (
                name.endswith(".*") and str(field_name).startswith(name[:-1]))
            if matches and where in ("*", operation):
                waived.append(f"{operation}: {field_name}")
                return False
        return True

    schema.hook(filter_failure)

    report = FuzzReport(operations=len(list(schema.get_all_operations())))
    seen: set[tuple[str, Any]] = set()
    requests_before = server.log.requests
    cut_before = len(server.log.cut_off)
    statuses_before = Counter(server.log.statuses)
    repairs_before = len(server.repairs)
    start = time.monotonic()
    with LoopbackGuard.armed() as blocked:
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                recorder = event.recorder
                report.cases += len(recorder.cases)
                report.cases_by_phase[event.phase.value] += len(recorder.cases)
                for case_id, nodes in recorder.checks.items():
                    for node in nodes:
                        info = node.failure_info
                        if info is None:
                            continue
                        key = (node.name, info.failure)
                        if key in seen:
                            continue
                        seen.add(key)
                        category = _category(node.name)
                        report.counts[category] += 1
                        report.found.append(Found(
                            category, node.name, str(info.failure.operation),
                            _kind(info.failure),
                            _describe(node.name, info.failure, recorder, case_id)))
                for interaction in recorder.interactions.values():
                    if interaction.response is None:
                        report.errors.append(
                            f"no response: {interaction.request.method} {interaction.request.uri}")
                if progress is not None:
                    progress(f"{event.phase.value}: {recorder.label} "
                             f"({server.log.requests - requests_before} requests)")
            elif isinstance(event, events.NonFatalError):
                report.errors.append(f"{event.label}: {event.info.title}: {event.info.message}")
            elif isinstance(event, events.FatalError):
                raise RuntimeError(f"schemathesis stopped: {event.exception!r}")
            elif isinstance(event, events.EngineFinished):
                for failure in event.failures:
                    report.counts["other"] += 1
                    report.found.append(Found("other", "after_run", str(failure.operation),
                                              _kind(failure),
                                              f"{failure.operation}: {failure.title}"))
    report.off_machine = list(blocked)
    report.seconds = time.monotonic() - start
    report.requests = server.log.requests - requests_before
    report.cut_off = server.log.cut_off[cut_before:]
    report.statuses = Counter(server.log.statuses)
    report.statuses.subtract(statuses_before)
    report.statuses = +report.statuses
    report.repairs = server.repairs[repairs_before:]
    report.waived = waived
    return report


def _kind(failure: Any) -> str:
    """The failure's class and what schemathesis tells its instances apart by (e.g. the
    status code of an undocumented status)."""
    return f"{type(failure).__name__}:{getattr(failure, '_unique_key', '')}"


def _describe(check: str, failure: Any, recorder: Any, case_id: str) -> str:
    interaction = recorder.interactions.get(case_id)
    request = response = ""
    if interaction is not None:
        req = interaction.request
        body = req.body[:300].decode("utf-8", "replace") if req.body else ""
        request = f"{req.method} {req.uri}" + (f" body={body!r}" if body else "")
        if interaction.response is not None:
            resp = interaction.response
            text = resp.content[:300].decode("utf-8", "replace") if resp.content else ""
            response = f" -> {resp.status_code} {text!r}"
    title = str(failure.title).replace("\n", " ")
    message = str(failure.message).strip().splitlines()
    first = message[0] if message else ""
    return f"{check}: {failure.operation}: {title}: {first} | {request}{response}"
