"""Starting supervisord on a host: through its systemd unit (deploy/flask-restx-starter.service) when installed, so
it comes back after a reboot; else from the SSH session, as a daemon that nothing restarts at boot."""

from __future__ import annotations

import os
import sys

from fabric import Connection

from deploy.hosts import NAME, q

UNIT = NAME


def start_supervisord(c: Connection, root: str) -> None:
    """Start supervisord from ``root``/current and wait until its control socket answers."""
    current = f"{q(root)}/current"
    state = c.run(f"systemctl is-enabled {UNIT} 2>/dev/null", hide=True, warn=True).stdout.strip()
    booted = c.run("test -d /run/systemd/system", hide=True, warn=True).ok  # sd_booted(): systemd runs the host
    if state and state != "not-found" and not booted:
        print(f"{c.host}: WARNING: the {UNIT} unit is installed but systemd does not run this host (a container?); "
              f"starting supervisord from this SSH session", file=sys.stderr)
        state = ""
    if state and state != "not-found":  # enabled, disabled, static, …: the unit is installed
        if state != "enabled":
            print(f"{c.host}: WARNING: the {UNIT} unit is {state}, not enabled: supervisord will not start at boot "
                  f"(systemctl enable {UNIT})", file=sys.stderr)
        print(f"{c.host}: starting supervisord through systemd ({UNIT})")
        started = c.run(f"sudo -n systemctl start {UNIT}", hide=True, warn=True)
        if not started.ok:
            said = started.stderr.strip()
            hint = (" (install deploy/sudoers: docs/operations.md, Prepare each host)"
                    if "sudo" in said and ("password" in said or "not allowed" in said) else
                    f" (systemctl status {UNIT}; journalctl -u {UNIT})")
            print(f"{c.host}: `sudo -n systemctl start {UNIT}` failed: {said}{hint}", file=sys.stderr)
            c.run(f"sudo -n systemctl start {UNIT}", hide=True)  # raises, with the command and its output
    else:
        print(f"{c.host}: WARNING: no {UNIT} systemd unit; supervisord is started from this SSH session and will "
              f"not come back after a reboot: install deploy/{UNIT}.service (docs/operations.md, Prepare each "
              f"host)", file=sys.stderr)
        c.run(f"{current}/.venv/bin/supervisord -c {current}/supervisord.ini")
    # Under systemd, `systemctl start` returns before supervisord has opened its socket (a daemonizing supervisord
    # opens it first); and a start skipped for an unmet condition runs nothing at all.
    tries = int(float(os.environ.get("DEPLOY_HEALTH_TIMEOUT", "30")) * 5)
    c.run(f"for _ in $(seq {tries}); do {current}/.venv/bin/supervisorctl -c {current}/supervisord.ini pid "
          f">/dev/null 2>&1 && exit 0; sleep 0.2; done; echo 'supervisord does not answer on its socket "
          f"(systemctl status {UNIT}; {root}/shared/instance/logs/supervisord.log)' >&2; exit 1", hide=True)
