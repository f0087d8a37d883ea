"""HTTP and HTTPS: identification, auth schemes, login forms, default credentials, open admin UIs.

A login counts only when confirmed: the candidate's answer differs from the answer to a random
wrong credential (status, redirect or page, no login form left), twice in a row, and a fresh
wrong credential still fails afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from fleetguard.scan._context import ProbeContext
from fleetguard.scan._net import insecure_tls_context, read_until

MAX_BODY = 256 * 1024


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes
    proto: str = "HTTP"

    def header(self, name: str) -> str | None:
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def all(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_response(raw: bytes) -> Response | None:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines:
        return None
    m = re.match(r"^(HTTP|RTSP)/\d\.\d\s+(\d{3})\s*(.*)$", lines[0])
    if not m:
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, colon, v = line.partition(":")
        if colon:
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    te = headers.get("transfer-encoding", [""])[0].lower()
    if "chunked" in te:
        body = _dechunk(body)
    else:
        cl = headers.get("content-length", [""])[0]
        if cl.isdigit():
            body = body[: int(cl)]
    return Response(int(m.group(2)), m.group(3), headers, body, m.group(1))


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(body) >= int(m.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        return body.endswith(b"0\r\n\r\n")
    return False  # read to EOF


class HttpClient:
    """One request per connection (Connection: close); only ever to this host and port."""

    def __init__(self, ctx: ProbeContext, port: int, tls: bool) -> None:
        self.ctx = ctx
        self.port = port
        self.tls = tls
        host = ctx.net.name or ctx.net.address
        if ":" in host:
            host = f"[{host}]"
        default = 443 if tls else 80
        self.host_header = host if port == default else f"{host}:{port}"
        self.cookies: dict[str, str] = {}

    def _ssl(self) -> ssl.SSLContext | None:
        return insecure_tls_context() if self.tls else None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response | None:
        hdrs = {
            "Host": self.host_header,
            "User-Agent": "fleetguard-scan/0.1",
            "Accept": "*/*",
            "Connection": "close",
        }
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body or method == "POST":
            hdrs["Content-Length"] = str(len(body))
        hdrs.update(headers or {})
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        try:
            async with self.ctx.net.tcp(self.port, tls=self._ssl()) as (reader, writer):
                writer.write(req.encode("latin-1") + b"\r\n" + body)
                await writer.drain()
                raw = await read_until(reader, _complete, self.ctx.timeout * 2, MAX_BODY)
        except (OSError, TimeoutError, ssl.SSLError):
            return None
        resp = parse_response(raw)
        if resp is not None:
            for c in resp.all("set-cookie"):
                k, eq, v = c.split(";", 1)[0].partition("=")
                if eq:
                    self.cookies[k.strip()] = v.strip()
        return resp

    def same_origin_path(self, location: str, base: str) -> str | None:
        """The path of a redirect target if it stays on this host and port, else None."""
        scheme = "https" if self.tls else "http"
        url = urljoin(f"{scheme}://{self.host_header}{base}", location)
        parts = urlsplit(url)
        if parts.scheme != scheme or parts.netloc.lower() != self.host_header.lower():
            return None
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def get_following(self, path: str, hops: int = 3) -> tuple[Response | None, str]:
        resp = await self.request("GET", path)
        while resp is not None and resp.status in (301, 302, 303, 307, 308) and hops > 0:
            loc = resp.header("location")
            nxt = self.same_origin_path(loc, path) if loc else None
            if nxt is None:
                break
            path, hops = nxt, hops - 1
            resp = await self.request("GET", path)
        return resp, path


# --- identification -------------------------------------------------------------------------


def product_from_server(server: str) -> tuple[str | None, str | None]:
    first = server.split()[0] if server.split() else server
    name, slash, ver = first.partition("/")
    return (name or None), (ver if slash and ver else None)


def auth_scheme(resp: Response) -> tuple[str, dict[str, str]] | None:
    for h in resp.all("www-authenticate"):
        scheme, _, rest = h.partition(" ")
        params = dict(
            (k.lower(), v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', rest)
        )
        s = scheme.lower()
        if s == "digest":
            return "digest", params
        if s == "basic":
            return "basic", params
    return None


def digest_header(
    params: dict[str, str], user: str, password: str, method: str, uri: str, nc: int = 1
) -> str:
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    algo = params.get("algorithm", "MD5")
    hfn = hashlib.sha256 if algo.upper().startswith("SHA-256") else hashlib.md5

    def h(s: str) -> str:
        return hfn(s.encode("utf-8")).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    cnonce = os.urandom(8).hex()
    qop = params.get("qop", "")
    if "auth" in [q.strip() for q in qop.split(",")]:
        ncv = f"{nc:08x}"
        resp = h(f"{ha1}:{nonce}:{ncv}:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc={ncv}, cnonce="{cnonce}"'
    else:
        resp = h(f"{ha1}:{nonce}:{ha2}")
        extra = ""
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm={algo}, response="{resp}"{extra}{opaque}'
    )


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def probe(ctx: ProbeContext, port: int, tls: bool) -> Response | None:
    """Is this HTTP? A GET / that returns an HTTP status line."""
    resp = await HttpClient(ctx, port, tls).request("GET", "/")
    return resp if resp is not None and resp.proto == "HTTP" else None


__all__ = ["HttpClient", "Response", "basic_header", "digest_header", "parse_response", "probe"]
