"""HTTP checks of a web service: what its front page says, logins over cleartext, default
credentials on HTTP authentication and on login forms, admin pages with no login."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

from fleetguard.scan._context import ProbeContext
from fleetguard.scan._http import (
    MAX_BODY,
    HttpClient,
    Response,
    auth_scheme,
    basic_header,
    digest_header,
    product_from_server,
)
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import Credential, for_service, random_credential
from fleetguard.scan.models import ServiceInfo, Severity

# --- HTML ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Form:
    action: str
    method: str
    inputs: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, value)

    @property
    def password_field(self) -> str | None:
        return next((n for n, t, _ in self.inputs if t == "password" and n), None)

    @property
    def user_field(self) -> str | None:
        texts = [n for n, t, _ in self.inputs if t in ("text", "email", "") and n]
        for n in texts:
            if re.search(r"user|login|name|mail|account|id", n, re.I):
                return n
        return texts[0] if texts else None


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._in_title = False
        self.forms: list[Form] = []
        self._form: Form | None = None
        self.loose_password = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "title":
            self._in_title = True
        elif tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower())
            self.forms.append(self._form)
        elif tag == "input":
            itype = a.get("type", "").lower()
            if self._form is not None:
                self._form.inputs.append((a.get("name", ""), itype, a.get("value", "")))
            elif itype == "password":
                self.loose_password = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "form":
            self._form = None

    def handle_data(self, data: str) -> None:
        if self._in_title and len(self.title) < 200:
            self.title += data


def parse_page(text: str) -> _PageParser:
    p = _PageParser()
    try:
        p.feed(text[:MAX_BODY])
        p.close()
    except (AssertionError, ValueError):
        pass
    p.title = " ".join(p.title.split())
    return p


def has_password_form(resp: Response) -> bool:
    page = parse_page(resp.text)
    return page.loose_password or any(f.password_field for f in page.forms)


_ADMIN_MARKERS = (
    "logout", "log out", "sign out", "reboot", "restart device", "factory reset",
    "firmware upgrade", "firmware update", "upgrade firmware", "change password",
    "network settings", "wireless settings", "system settings", "device settings",
    "admin password", "wan settings", "port forwarding", "maintenance",
)  # fmt: skip


def admin_markers(text: str) -> list[str]:
    low = text.lower()
    return [m for m in _ADMIN_MARKERS if m in low]


def _rand_cred() -> Credential:
    return random_credential()


async def check_http(ctx: ProbeContext, info: ServiceInfo, first: Response | None) -> None:
    client = HttpClient(ctx, info.port, info.tls)
    resp, path = await client.get_following("/")
    if resp is None:
        resp, path = first, "/"
    if resp is None:
        ctx.note(
            info.port,
            info.transport,
            CheckId.DEFAULT_CREDENTIALS,
            "HTTP service stopped answering before it could be checked",
        )
        return
    _describe(info, resp)
    page = parse_page(resp.text)
    if page.title:
        info.extra["title"] = page.title[:120]
    auth = auth_scheme(resp) if resp.status == 401 else None
    if auth:
        await _check_http_auth(ctx, info, client, path, auth)
        return
    form = next((f for f in page.forms if f.password_field), None)
    if form is not None or page.loose_password:
        await _check_login_form(ctx, info, path, form)
        return
    if 200 <= resp.status < 300:
        markers = admin_markers(resp.text)
        if len(markers) >= 2:
            ctx.finding(
                info,
                CheckId.NO_AUTHENTICATION,
                f"GET {path} returned {resp.status} with an administration page "
                f"({', '.join(markers[:4])}) and no login",
                title="Web administration interface without authentication",
            )


def _describe(info: ServiceInfo, resp: Response) -> None:
    server = resp.header("server")
    if server:
        info.banner = server[:200]
        info.product, info.version = product_from_server(server)


async def _check_http_auth(
    ctx: ProbeContext, info: ServiceInfo, client: HttpClient, path: str,
    auth: tuple[str, dict[str, str]],
) -> None:
    scheme, params = auth
    info.extra["auth"] = scheme
    if params.get("realm"):
        info.extra["realm"] = params["realm"][:120]
    if not info.tls:
        ctx.finding(
            info,
            CheckId.CLEARTEXT_PROTOCOL,
            f"HTTP {scheme} authentication on cleartext HTTP at {path}: credentials "
            "cross the network readable" + (" (base64 only)" if scheme == "basic" else ""),
            title="Login over cleartext HTTP",
        )
    await _auth_defaults(ctx, info, client, path, scheme)


async def _check_login_form(
    ctx: ProbeContext, info: ServiceInfo, path: str, form: Form | None
) -> None:
    info.extra["auth"] = "form"
    if not info.tls:
        ctx.finding(
            info,
            CheckId.CLEARTEXT_PROTOCOL,
            f"login form at {path} is served and submitted over cleartext HTTP",
            title="Login over cleartext HTTP",
        )
    if form is not None:
        await _form_defaults(ctx, info, path, form)
    else:
        ctx.note(
            info.port,
            info.transport,
            CheckId.DEFAULT_CREDENTIALS,
            f"password field at {path} outside a form (script login): not checked",
        )


async def _auth_defaults(
    ctx: ProbeContext, info: ServiceInfo, client: HttpClient, path: str, scheme: str
) -> None:
    if not ctx.options.credentials:
        return

    async def attempt(cred: Credential) -> int | None:
        if scheme == "basic":
            r = await client.request(
                "GET", path, headers={"Authorization": basic_header(cred.username, cred.password)}
            )
            return r.status if r else None
        first = await client.request("GET", path)
        if first is None or first.status != 401:
            return first.status if first else None
        ch = auth_scheme(first)
        if ch is None or ch[0] != "digest":
            return None
        hdr = digest_header(ch[1], cred.username, cred.password, "GET", path)
        r = await client.request("GET", path, headers={"Authorization": hdr})
        return r.status if r else None

    if await attempt(_rand_cred()) != 401:
        ctx.note(
            info.port,
            info.transport,
            CheckId.DEFAULT_CREDENTIALS,
            f"{scheme} auth at {path}: a random credential was not refused with 401; "
            "not checked to avoid a false positive",
        )
        return
    budget = ctx.budget(info.service)
    async for cred in budget.attempts(for_service(ctx.credentials, info.service)):
        status = await attempt(cred)
        if status is None or not (200 <= status < 400):
            continue
        # confirm: the same credential again, and a random one still refused
        if await attempt(cred) == status and await attempt(_rand_cred()) == 401:
            ctx.finding(
                info,
                CheckId.DEFAULT_CREDENTIALS,
                f"HTTP {scheme} auth at {path} accepted default credential {cred} "
                f"(status {status}; a random credential gets 401)",
                severity=Severity.CRITICAL,
            )
            return


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: int
    location: str
    final_status: int
    login_form: bool
    body: str


_NOT_SENT = frozenset({"submit", "button", "image", "reset", "checkbox", "radio"})


def _filled_form(form: Form, password_field: str, cred: Credential) -> bytes:
    """The form's own fields as the page set them, with ``cred`` in the login fields."""
    data = {name: value for name, itype, value in form.inputs
            if name and itype not in _NOT_SENT}
    if form.user_field:
        data[form.user_field] = cred.username
    data[password_field] = cred.password
    return urlencode(data).encode()


async def _submit(
    ctx: ProbeContext, info: ServiceInfo, path: str, cred: Credential
) -> _Outcome | None:
    client = HttpClient(ctx, info.port, info.tls)  # fresh cookie jar per attempt
    page_resp, page_path = await client.get_following(path)
    if page_resp is None:
        return None
    form = next((f for f in parse_page(page_resp.text).forms if f.password_field), None)
    if form is None or form.password_field is None:
        return None
    action = client.same_origin_path(form.action or page_path, page_path)
    if action is None:
        return None
    body = _filled_form(form, form.password_field, cred)
    if form.method == "post":
        resp = await client.request(
            "POST", action, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    else:
        sep = "&" if "?" in action else "?"
        resp = await client.request("GET", action + sep + body.decode())
    if resp is None:
        return None
    location = resp.header("location") or ""
    final = await _landing(client, resp, location, action)
    norm = re.sub(r"[0-9a-f]{8,}|\d+", "", final.text)[:8000]
    loc_path = urlsplit(location).path if location else ""
    return _Outcome(resp.status, loc_path, final.status, has_password_form(final), norm)


async def _landing(client: HttpClient, resp: Response, location: str, action: str) -> Response:
    """Where a login answer lands: its same-origin redirect followed, or the answer itself."""
    if resp.status not in (301, 302, 303, 307, 308) or not location:
        return resp
    nxt = client.same_origin_path(location, action)
    if nxt is None:
        return resp
    final, _ = await client.get_following(nxt, hops=2)
    return final or resp


def _same(a: _Outcome, b: _Outcome) -> bool:
    if (a.status, a.location, a.final_status, a.login_form) != (
        b.status,
        b.location,
        b.final_status,
        b.login_form,
    ):
        return False
    return difflib.SequenceMatcher(None, a.body, b.body).quick_ratio() > 0.9


async def _form_defaults(ctx: ProbeContext, info: ServiceInfo, path: str, form: Form) -> None:
    if not ctx.options.credentials:
        return
    base1 = await _submit(ctx, info, path, _rand_cred())
    base2 = await _submit(ctx, info, path, _rand_cred())
    if base1 is None or base2 is None or not _same(base1, base2) or base1.final_status >= 500:
        ctx.note(
            info.port,
            info.transport,
            CheckId.DEFAULT_CREDENTIALS,
            f"login form at {path}: the failure answer is not stable; not checked",
        )
        return
    budget = ctx.budget(info.service)
    async for cred in budget.attempts(for_service(ctx.credentials, info.service)):
        out = await _submit(ctx, info, path, cred)
        if out is None or _same(out, base1) or out.login_form or out.final_status >= 400:
            continue
        again = await _submit(ctx, info, path, cred)
        after = await _submit(ctx, info, path, _rand_cred())
        if again is not None and _same(again, out) and after is not None and _same(after, base1):
            ctx.finding(
                info,
                CheckId.DEFAULT_CREDENTIALS,
                f"login form at {path} accepted default credential {cred}: answer "
                f"{out.status}{' -> ' + out.location if out.location else ''} without a "
                f"login form, unlike a random credential ({base1.status}"
                f"{' -> ' + base1.location if base1.location else ''}); confirmed twice",
                severity=Severity.CRITICAL,
            )
            return


__all__ = ["check_http"]
