"""Posture checks against small /etc trees made in the test."""

from __future__ import annotations

from pathlib import Path

from fleetguard.agent.checks import CHECKS, CheckEnvironment, run_checks


def _etc(tmp: Path, sshd: str | None = None, passwd: str = "root:x:0:0::/root:/bin/sh\n",
         shadow: str | None = "root:$6$x:19000::::::\n") -> CheckEnvironment:
    etc = tmp / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "passwd").write_text(passwd)
    (etc / "passwd").chmod(0o644)
    if shadow is not None:
        (etc / "shadow").write_text(shadow)
        (etc / "shadow").chmod(0o640)
    if sshd is not None:
        (etc / "ssh" / "sshd_config").write_text(sshd)
    return CheckEnvironment(etc=etc, listening_ports=lambda: {22, 443})


def _status(env: CheckEnvironment, *ids: str) -> dict[str, str]:
    return {o.check_id: o.status.value for o in run_checks(list(ids) or None, env)}


def test_a_clean_device_passes(tmp_path: Path) -> None:
    env = _etc(tmp_path, sshd="PermitRootLogin no\nPasswordAuthentication no\n")
    assert set(_status(env).values()) == {"pass"}
    assert set(_status(env)) == set(CHECKS)


def test_weak_settings_fail(tmp_path: Path) -> None:
    env = _etc(
        tmp_path,
        sshd="# first value wins\nInclude sshd_config.d/*.conf\nPermitRootLogin no\n",
        passwd="root:x:0:0::/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n"
               "guest:x:1001:1001::/:/usr/sbin/nologin\n",
        shadow="root:$6$x:1::::::\nadmin::1::::::\n",
    )
    (env.etc / "ssh" / "sshd_config.d").mkdir()
    (env.etc / "ssh" / "sshd_config.d" / "10-vendor.conf").write_text("PermitRootLogin yes\n")
    (env.etc / "passwd").chmod(0o666)
    env = CheckEnvironment(etc=env.etc, listening_ports=lambda: {21, 23, 80})
    status = _status(env)
    assert status == {
        "net.telnet_listening": "fail", "net.ftp_listening": "fail",
        "fs.passwd_world_writable": "fail", "fs.shadow_world_readable": "pass",
        "ssh.permit_root_login": "fail", "ssh.password_authentication": "fail",
        "accounts.default_names": "fail", "accounts.empty_password": "fail",
    }
    details = {o.check_id: o.detail for o in run_checks(None, env)}
    assert details["accounts.default_names"] == "login account(s) with default-looking names: admin"
    assert "defaults to yes" in (details["ssh.password_authentication"] or "")


def test_match_blocks_do_not_count_and_missing_sshd_is_not_applicable(tmp_path: Path) -> None:
    env = _etc(tmp_path, sshd="PasswordAuthentication no\nMatch User x\n  PermitRootLogin yes\n")
    assert _status(env, "ssh.permit_root_login") == {"ssh.permit_root_login": "pass"}
    bare = _etc(tmp_path / "b", sshd=None, shadow=None)
    assert _status(bare, "ssh.permit_root_login", "accounts.empty_password", "nope.unknown") == {
        "ssh.permit_root_login": "not_applicable", "accounts.empty_password": "not_applicable",
        "nope.unknown": "not_applicable",
    }


def test_the_real_machine_gives_an_answer_for_every_check() -> None:
    outcomes = run_checks()
    assert [o.check_id for o in outcomes] == list(CHECKS)
