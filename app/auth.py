"""Who is calling: the token a request carries, the one check of it, and the identity it proves for the request.

GET /api/users/me with a token: the route (app/api/users.py) → @login_check (app/decorators.py) → ``authenticate``
here → the token, its session and the user's cached profile in one Redis round trip (app/services/sessions.py,
app/services/user_cache.py) → back to the handler, which reads ``current_identity()`` or ``current_user()``.

For one request this module keeps plain values on ``flask.g``: ``g.auth_identity``, ``g.auth_user`` and
``g.auth_signed_in``; only this module reads or writes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NoReturn

from flask import Flask, g, request
from flask.sessions import NullSession, SessionInterface

from app.config import configs
from app.errors import Forbidden, NotAuthorized, ReauthRequired
from app.i18n import _, lazy_gettext
from app.models import User
from app.services import sessions, user_cache
from app.services.user_cache import Profile

REFUSED = lazy_gettext("The token is missing, unknown, expired or revoked.")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a live access token belongs to: the user, the session, and the user's cached columns."""

    user_id: int
    session_id: str
    profile: Profile
    authenticated_at: float  # when the session last proved the password or a second factor (epoch seconds)
    second_factor_at: float  # when it last proved a second factor (0: never)
    row: User | None = field(default=None, compare=False, repr=False)  # the user's row, if the check read it

    @property
    def is_admin(self) -> bool:
        return self.profile.is_admin


def request_token() -> str:
    """The access token from the ``token`` header, or from ``Authorization: Bearer <token>``."""
    token = request.headers.get("token", "").strip()
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    return token


def authenticate(token: str) -> Identity:
    """The identity of a live access token: one Redis round trip, and no SQL query while the user's profile is
    cached (otherwise one, and the profile is cached). 401 for a token that is not live or whose user is gone,
    403 for a deactivated user."""
    live = sessions.authenticate(token, user_cache.key_prefix())
    if live is None:
        raise NotAuthorized(REFUSED)
    profile = Profile.parse(live.snapshot, live.user_id) if live.snapshot else None
    row = None
    if profile is None:  # not cached, or cached in another layout
        row = user_cache.read(live.user_id)
        if row is None:
            sessions.end_session(live.session_id)
            raise NotAuthorized(REFUSED)
        profile = Profile.of(row)
    if not profile.is_active:
        raise Forbidden(_("This account is deactivated."))
    return Identity(live.user_id, live.session_id, profile, live.authenticated_at, live.second_factor_at, row)


def check_request() -> Identity:
    """Authenticate this request's token and keep the identity for the rest of the request (@login_check)."""
    identity = authenticate(request_token())
    g.auth_identity = identity
    return identity


def current_identity() -> Identity:
    """Who is calling, as @login_check checked it; an error in a handler without @login_check."""
    identity: Identity | None = g.get("auth_identity")
    if identity is None:
        raise RuntimeError("current_identity() needs @login_check on the operation")
    return identity


def require_recent_auth(second_factor: bool = False) -> None:
    """401 REAUTH_REQUIRED unless the caller's session proved the password or a second factor within
    ``auth.reauth_window`` (a login, POST /api/auth/reauth or /auth/login/mfa): for sensitive changes. With
    ``second_factor``, only a second factor counts (turning it off, new recovery codes)."""
    identity = current_identity()
    if second_factor:
        if time.time() - identity.second_factor_at > configs.auth.reauth_window:
            raise ReauthRequired(_("Confirm with a code from your authenticator app first (POST /api/auth/reauth)."))
    elif time.time() - identity.authenticated_at > configs.auth.reauth_window:
        raise ReauthRequired()


def current_user() -> User:
    """The caller's ``User`` row: the one the check read, or else made from the cached profile on first call and
    attached to the database session without a query (the columns the profile lacks load when first read); the
    same object for the rest of the request. A request that never calls this does no ORM work."""
    user: User | None = g.get("auth_user")
    if user is None:
        identity = current_identity()
        user = identity.row if identity.row is not None else user_cache.attach(identity.profile)
        g.auth_user = user
    return user


def note_signed_in(user_id: int) -> None:
    """Name the user a login or refresh just signed in as this request's user (for its log lines)."""
    g.auth_signed_in = user_id


def signed_in_user_id() -> int | None:
    """The id of the user this request is from, or None; never touches the ORM (log lines use it)."""
    identity: Identity | None = g.get("auth_identity")
    return identity.user_id if identity is not None else g.get("auth_signed_in")


class NoCookieSession(NullSession):
    """What ``flask.session`` is here: reading finds it empty, writing raises saying why."""

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("Flask's cookie session is off: this API signs callers in with tokens (app/auth.py). To "
                           "have it back, set app.session_interface = flask.sessions.SecureCookieSessionInterface().")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = update = setdefault = _fail


class TokenOnlySessions(SessionInterface):
    """No cookie session is opened: nothing here uses one, and opening Flask's signed cookie costs about 20 µs a
    request (docs/performance.md)."""

    null_session_class = NoCookieSession

    def open_session(self, app: Flask, request: object) -> None:
        return None  # Flask then uses null_session_class

    def save_session(self, app: Flask, session: object, response: object) -> None:
        return None
