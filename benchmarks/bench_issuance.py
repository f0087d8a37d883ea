"""CSR-to-certificate throughput: fleetguard in-process against `openssl x509 -req`.

Both sides sign the same P-256 device CSRs with the same issuing CA key, with the same
extensions (CN and URI SAN of the device, keyUsage, clientAuth, CA:false, SKI/AKI),
pinned to one CPU. fleetguard's figure includes parsing the CSR, the key policy and the
proof-of-possession check; openssl's includes its process start, as a CA operator
scripting it would pay.

    PYTHONPATH=src python benchmarks/bench_issuance.py [--count 3000] [--openssl-count 300]

Target (issue 3): at least 2,000 certificates/s in-process on one core with P-256.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetguard.keys import MasterKey
from fleetguard.pki import EncryptedFileKeyBackend, device_uri, init_fleet_ca

TARGET_PER_SECOND = 2000


def _pin_to_one_cpu() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _make_csrs(count: int) -> list[tuple[uuid.UUID, bytes]]:
    out = []
    for _ in range(count):
        device_id = uuid.uuid4()
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(device_id))]))
            .sign(key, hashes.SHA256())
        )
        out.append((device_id, csr.public_bytes(serialization.Encoding.PEM)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="CSRs signed in-process")
    parser.add_argument("--openssl-count", type=int, default=300, help="CSRs signed by openssl")
    args = parser.parse_args()
    openssl = shutil.which("openssl")
    if openssl is None:
        print("openssl is not installed; the peer cannot run", file=sys.stderr)
        return 2
    pinned = _pin_to_one_cpu()
    csrs = _make_csrs(max(args.count, args.openssl_count))

    with tempfile.TemporaryDirectory(prefix="fg-bench-") as tmp:
        work = Path(tmp)
        backend = EncryptedFileKeyBackend(MasterKey(os.urandom(32)))
        ca = init_fleet_ca(work / "ca", backend)

        # fleetguard, in-process
        ca.issue_device_certificate(csrs[0][1], csrs[0][0])  # opens the key: not timed
        start = time.perf_counter()
        for device_id, csr in csrs[: args.count]:
            ca.issue_device_certificate(csr, device_id)
        ours = args.count / (time.perf_counter() - start)

        # openssl x509 -req, one process per CSR, same key and extensions
        issuing = ca.active_issuing_ca
        key = backend.signer(ca.directory, issuing.key)
        key_file = work / "issuing.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(
            fd,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        os.close(fd)
        cert_file = work / "issuing.pem"
        cert_file.write_bytes(issuing.pem)
        jobs = []
        for i, (device_id, csr) in enumerate(csrs[: args.openssl_count]):
            (work / f"{i}.csr").write_bytes(csr)
            (work / f"{i}.ext").write_text(
                "[v3]\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                f"subjectAltName=URI:{device_uri(device_id)}\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            )
            jobs.append(
                [
                    openssl,
                    "x509",
                    "-req",
                    "-in",
                    str(work / f"{i}.csr"),
                    "-CA",
                    str(cert_file),
                    "-CAkey",
                    str(key_file),
                    "-set_serial",
                    str(x509.random_serial_number()),
                    "-days",
                    "30",
                    "-sha256",
                    "-extfile",
                    str(work / f"{i}.ext"),
                    "-extensions",
                    "v3",
                    "-out",
                    str(work / f"{i}.crt"),
                ]
            )
        start = time.perf_counter()
        for cmd in jobs:
            subprocess.run(cmd, check=True, capture_output=True)
        theirs = args.openssl_count / (time.perf_counter() - start)
        check = subprocess.run(
            [openssl, "verify", "-CAfile", str(ca.bundle_path), str(work / "0.crt")],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            print(f"openssl's certificate does not verify: {check.stdout}{check.stderr}")
            return 1
        ca.close()

    ratio = ours / theirs
    print(f"bench_issuance: P-256 device certificates from CSRs, one core ({pinned})")
    print(f"  fleetguard in-process : {ours:10.0f} certs/s  ({args.count} CSRs)")
    print(f"  openssl x509 -req     : {theirs:10.0f} certs/s  ({args.openssl_count} CSRs)")
    print(f"  ratio fleetguard/openssl: {ratio:.1f}x")
    verdict = "meets" if ours >= TARGET_PER_SECOND else "MISSES"
    print(f"  target >= {TARGET_PER_SECOND} certs/s in-process: {verdict}")
    return 0 if ours >= TARGET_PER_SECOND else 1


if __name__ == "__main__":
    raise SystemExit(main())
