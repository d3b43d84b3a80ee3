"""Whether a new password appeared in a known data breach: an optional check (``auth.breached_passwords_url``)
against a Have I Been Pwned-compatible range API, such as https://api.pwnedpasswords.com/range/.

k-anonymity: only the first 5 hex characters of the password's SHA-1 leave the process. The service answers every
hash suffix it knows under that prefix as ``SUFFIX:COUNT`` lines, padded (``Add-Padding: true``) with made-up
suffixes counted 0, so the answer's size does not tell which suffix was wanted. The check fails open: a service
that is down, slow or answers nonsense costs a warning in the log, not the user's registration or reset.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from urllib.parse import urlsplit

import requests
import urllib3

from app.config import configs
from app.errors import InvalidField
from app.i18n import _

log = logging.getLogger(__name__)

PREFIX_LENGTH = 5
MAX_ANSWER_BYTES = 2 * 1024 * 1024  # HIBP's answers are about 30 KiB, padded ones about 40 KiB
_LINE = re.compile(r"([0-9A-F]{35}):(\d+)")
_sessions = threading.local()  # a requests.Session per thread: its connections are reused, never shared


class _Unusable(Exception):
    """The service answered, but not with a range we can read; the message says how, without the hash."""


def check_not_breached(password: str, field: str = "password") -> None:
    """400 on ``field`` when the range service counts ``password`` in a breach; nothing when the check is off
    or the service cannot answer (logged)."""
    base_url = configs.auth.breached_passwords_url
    if not base_url:
        return
    digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
    try:
        counts = _range(base_url + digest[:PREFIX_LENGTH], configs.auth.breached_passwords_timeout)
    except (OSError, urllib3.exceptions.HTTPError, _Unusable) as exc:  # requests' errors are OSErrors
        # The exception's text may hold the URL, and so the hash prefix: only its kind is logged (and only the
        # service's host, not a password that its URL may hold).
        reason = str(exc) if isinstance(exc, _Unusable) else type(exc).__name__
        log.warning("breached-password check at %s failed (%s): the password was accepted unchecked",
                    urlsplit(base_url).hostname, reason)
        return
    if counts.get(digest[PREFIX_LENGTH:], 0) > 0:
        raise InvalidField(_("%(field)s has appeared in a known data breach, so attackers try it early. Choose "
                             "another one.", field=field), field=field)


def _range(url: str, timeout: float) -> dict[str, int]:
    """Suffix → count from the range at ``url``. ``timeout`` bounds the connection and each wait for data, and
    reading the body stops once it has passed in all (each read returns what has arrived) or past
    MAX_ANSWER_BYTES: about twice ``timeout`` at most, unless the service trickles its headers."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    deadline = time.monotonic() + timeout
    with session.get(url, headers={"Add-Padding": "true"}, timeout=timeout, stream=True,
                     allow_redirects=False) as response:
        if response.status_code != 200:
            raise _Unusable(f"HTTP {response.status_code}")
        body = bytearray()
        while chunk := response.raw.read1(64 * 1024, decode_content=True):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise _Unusable(f"an answer over {MAX_ANSWER_BYTES} bytes")
            if time.monotonic() > deadline:
                raise _Unusable(f"an answer slower than {timeout} s")
    counts = {}
    for line in body.decode("latin-1").split():
        found = _LINE.fullmatch(line.upper())
        if found is None:
            raise _Unusable("an answer that is not SUFFIX:COUNT lines")
        counts[found.group(1)] = int(found.group(2))
    return counts
