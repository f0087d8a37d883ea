"""Benchmark: `fleetguard scan` against `nmap -sV` on the same loopback targets and ports.

    python benchmarks/bench_scan.py            # lab comparison (+ silent /24 if allowed)

It prints three things:

1. The wall time of each tool on the same weak devices, with the same ports, and the ratio.
   The devices run on 127.0.0.1xx at their usual ports, so the lab needs root to bind them.
2. Which weaknesses each tool reported. nmap runs its matching NSE scripts: ftp-anon,
   ssl-cert, ssl-enum-ciphers, mqtt-subscribe, http-default-accounts, snmp-info, upnp-info,
   rtsp-methods.
3. The time to scan a /24 of silent addresses with default settings, against the 30 s target.
   The addresses sit in a private network namespace (routed into a TUN device nobody reads,
   so nothing answers), made with `unshare -n`. That part is skipped when it cannot be made.

Loopback and a private namespace only: nothing leaves the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.scan import lab as L  # noqa: E402

from fleetguard.scan import build_options, run_scan  # noqa: E402
from fleetguard.scan.models import Service  # noqa: E402

TCP = (21, 22, 23, 80, 443, 554, 1883, 2323, 8080, 8443)
UDP = (161, 1900, 5683)


def start_lab(tmp: Path) -> tuple[L.Lab, list[str]]:
    lb = L.Lab()

    def tcp(addr: str, port: int, handler, ssl_ctx=None) -> None:  # type: ignore[no-untyped-def]
        async def start() -> None:
            import asyncio

            async def safe(r, w):  # type: ignore[no-untyped-def]
                try:
                    await handler(r, w)
                except Exception:
                    pass
                finally:
                    w.close()

            server = await asyncio.start_server(safe, addr, port, ssl=ssl_ctx)

            async def close() -> None:
                server.close()

            lb.closers.append(close)

        lb.run(start())

    def udp(addr: str, port: int, respond) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        class P(asyncio.DatagramProtocol):
            def connection_made(self, t):  # type: ignore[no-untyped-def]
                self.t = t

            def datagram_received(self, data, a):  # type: ignore[no-untyped-def]
                for out in respond(data):
                    self.t.sendto(out, a)

        async def start() -> None:
            tr, _ = await lb.loop.create_datagram_endpoint(P, local_addr=(addr, port))

            async def close() -> None:
                tr.close()

            lb.closers.append(close)

        lb.run(start())

    tcp("127.0.0.101", 23, L.telnet_login(L.default_cred(Service.TELNET, 2)))
    tcp("127.0.0.102", 21, L.ftp_server(True, None))
    tcp("127.0.0.103", 80, L.http_server(L.basic_auth_app(L.default_cred(Service.HTTP, 0))))
    tcp("127.0.0.104", 8080, L.http_server(L.form_login_app(L.default_cred(Service.HTTP, 3))))
    tcp("127.0.0.105", 554, L.rtsp_server(L.default_cred(Service.RTSP, 1)))
    udp("127.0.0.106", 161, L.snmp_agent("public", "Linux ipcam 3.10.14 armv7l"))
    tcp("127.0.0.107", 80, L.http_server(lambda r: L.http_response(
        200, L.DEVICE_XML.format(serial="42", uuid="abc"), {"Content-Type": "text/xml"})))
    udp("127.0.0.107", 1900, L.ssdp_responder("http://127.0.0.107:80/desc.xml"))
    udp("127.0.0.108", 5683, L.coap_server)
    from cryptography.hazmat.primitives import hashes

    weak = L.make_cert(L.CertSpec(key_bits=1024, hash=hashes.SHA1(), days_valid=(-60, -1)), tmp, "w")
    tcp("127.0.0.109", 443, L.http_server(L.plain_site_app), weak)
    legacy = L.legacy_tls_context(tmp)
    if legacy is not None:
        tcp("127.0.0.110", 8443, L.http_server(L.plain_site_app), legacy)
    addrs = [f"127.0.0.{i}" for i in range(101, 111)]
    procs = []
    if shutil.which("mosquitto"):
        conf = tmp / "m.conf"
        conf.write_text("listener 1883 127.0.0.111\nallow_anonymous true\nuser root\nlog_dest none\n")
        procs.append(subprocess.Popen(["mosquitto", "-c", str(conf)]))
        addrs.append("127.0.0.111")
        time.sleep(0.3)
    lb.procs = procs  # type: ignore[attr-defined]
    return lb, addrs


def fleetguard_found(report) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    out: dict[str, set[str]] = {}
    for f in report.findings:
        if f.check != "service-exposed":
            out.setdefault(f.host, set()).add(f.check)
    return out


NMAP_SIGNS = {
    "Anonymous FTP login allowed": "no-authentication (ftp)",
    "Valid credentials": "default-credentials (http)",
    "ssl-enum-ciphers": "tls ciphers enumerated",
    "TLSv1.0:": "tls-legacy-protocol",
    "SSLv3:": "tls-legacy-protocol (SSLv3)",
    "RC4": "tls-weak-cipher",
    "mqtt-subscribe": "mqtt topics read (no-authentication)",
    "Not valid after": "certificate dates shown (policy left to the reader)",
    "upnp-info": "upnp-exposed",
    "snmp-info": "snmp answered (public)",
}


def run_nmap(addrs: list[str]) -> tuple[float, str]:
    ports = "T:" + ",".join(map(str, TCP)) + ",U:" + ",".join(map(str, UDP))
    scripts = ("ftp-anon,ssl-cert,ssl-enum-ciphers,mqtt-subscribe,http-default-accounts,"
               "snmp-info,upnp-info,rtsp-methods")
    cmd = ["nmap", "-n", "-Pn", "-sV", "-sS", "-sU", "-p", ports, "--script", scripts, *addrs]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900).stdout
    return time.perf_counter() - t0, out


def nmap_found(out: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for block in re.split(r"(?m)^Nmap scan report for ", out)[1:]:
        host = block.split()[0]
        for sign, meaning in NMAP_SIGNS.items():
            if sign in block:
                found.setdefault(host, set()).add(meaning)
        if re.search(r"(?m)^\d+/tcp\s+open\s+telnet", block):
            found.setdefault(host, set()).add("telnet open (no login test: brute scripts off)")
    return found


def silent_24() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        print("silent /24: skipped (needs root, unshare and ip)")
        return
    code = (
        "import sys,time; sys.path[:0]=[{!r}]\n"
        "from fleetguard.scan import build_options, run_scan\n"
        "t=time.perf_counter(); r=run_scan(build_options(['10.254.0.0/24']))\n"
        "e=time.perf_counter()-t\n"
        "print(f'{{len(r.hosts)}} {{sum(h.status.value==\"no-response\" for h in r.hosts)}} {{e:.2f}}')\n"
    ).format(str(ROOT / "src"))
    script = (
        "ip link set lo up && ip tuntap add dev t0 mode tun && ip link set t0 up && "
        "ip route add 10.254.0.0/24 dev t0 && "
        f"{sys.executable} -c \"$FG_CODE\""
    )
    res = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True,
                         env={**os.environ, "FG_CODE": code}, timeout=300)
    if res.returncode != 0:
        print(f"silent /24: could not run in a namespace: {res.stderr.strip()[:200]}")
        return
    hosts, silent, secs = res.stdout.split()[-3:]
    print(f"silent /24 (10.254.0.0/24 in a private netns, default settings): {hosts} addresses, "
          f"{silent} no-response, {float(secs):.1f} s; target 30 s -> ratio {float(secs) / 30:.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        lb, addrs = start_lab(Path(d))
        try:
            ports = ",".join(map(str, TCP)) + ",U:" + ",".join(map(str, UDP))
            t0 = time.perf_counter()
            report = run_scan(build_options(addrs, ports=ports))
            fg_time = time.perf_counter() - t0
            fg = fleetguard_found(report)
            print(f"lab: {len(addrs)} addresses x {len(TCP)} TCP + {len(UDP)} UDP ports")
            print(f"fleetguard scan (default settings, logins on): {fg_time:.2f} s")
            if shutil.which("nmap"):
                nm_time, out = run_nmap(addrs)
                nm = nmap_found(out)
                print(f"nmap -sV -sS -sU + NSE scripts:               {nm_time:.2f} s")
                print(f"ratio nmap / fleetguard: {nm_time / fg_time:.2f}x")
            else:
                nm = {}
                print("nmap not installed: no peer timing (apt-get install nmap)")
            print("\nweaknesses per host (fleetguard | nmap):")
            for a in addrs:
                print(f"  {a:12} {', '.join(sorted(fg.get(a, set()))) or '-'}")
                print(f"  {'':12} nmap: {', '.join(sorted(nm.get(a, set()))) or '-'}")
        finally:
            for p in getattr(lb, "procs", []):
                p.terminate()
            lb.close()
    silent_24()


if __name__ == "__main__":
    main()
