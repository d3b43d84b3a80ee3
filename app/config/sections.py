"""The settings as typed, frozen sections: one dataclass per section of config_default.py, one field per key.

config_default.py keeps every default and its comment; these classes only say each key's type, so mypy and IDEs
see every setting. tests/test_config.py checks that both name the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


class Section:
    """Item access (``section["key"]``), kept for code written against the old dict; app code reads attributes."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        names = attribute_names(type(self))
        if key not in names:
            raise KeyError(key)
        return getattr(self, names[key])


_NAMES: dict[type, dict[str, str]] = {}


def attribute_names(cls: type) -> dict[str, str]:
    """Key → attribute name: the same, except where ``field(metadata={"key": ...})`` names a Python keyword."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = {f.metadata.get("key", f.name): f.name for f in fields(cls)}
    return names


@dataclass(frozen=True, slots=True)
class AppSettings(Section):
    env: str
    debug: bool
    secret_key: str
    name: str
    trusted_proxies: int
    locale: Literal["en", "zh-CN"]
    public_url: str


@dataclass(frozen=True, slots=True)
class DatabaseSettings(Section):
    url: str
    auto_migrate: bool
    echo: bool
    pool_size: int
    pool_timeout: int
    connect_timeout: int
    query_timeout: float


@dataclass(frozen=True, slots=True)
class RedisSettings(Section):
    url: str
    prefix: str
    connect_timeout: float
    socket_timeout: float
    retries: int
    replica_wait_ms: int


@dataclass(frozen=True, slots=True)
class ApiSettings(Section):
    docs: bool
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class ServerSettings(Section):
    threads: int
    shutdown_timeout: int
    cpu_affinity: bool
    max_body_size: int
    event_loop: Literal["auto", "uvloop", "asyncio"]
    http: Literal["auto", "tornado", "httptools"]
    header_timeout: float
    keep_alive_timeout: float


@dataclass(frozen=True, slots=True)
class MetricsSettings(Section):
    enabled: bool
    token: str
    directory: str


@dataclass(frozen=True, slots=True)
class AuthSettings(Section):
    token_ttl: int
    refresh_ttl: int
    argon2_time_cost: int
    argon2_memory_cost: int
    argon2_parallelism: int
    failure_window: int
    max_failures_per_account: int
    max_failures_per_ip: int
    email_code_ttl: int
    reset_mails_per_address: int
    reset_mails_per_ip: int
    profile_cache_ttl: int
    idle_timeout: int
    session_max_age: int
    max_sessions: int
    reauth_window: int
    events_ttl_days: int
    min_password_score: int
    password_words: list[str]
    breached_passwords_url: str
    breached_passwords_timeout: float


@dataclass(frozen=True, slots=True)
class AsyncSettings(Section):
    workers: int


@dataclass(frozen=True, slots=True)
class JobsSettings(Section):
    backend: Literal["thread", "celery"]
    max_retries: int
    retry_backoff_max: int
    visibility_timeout: int


@dataclass(frozen=True, slots=True)
class SmsHttpSettings(Section):
    url: str
    secret: str
    timeout: float


@dataclass(frozen=True, slots=True)
class SmsSettings(Section):
    gateway: Literal["console", "file", "http"]
    code_ttl: int
    resend_after: int
    max_attempts: int
    ticket_ttl: int
    daily_cap_per_phone: int
    daily_cap_per_ip: int
    template: str
    outbox: str
    http: SmsHttpSettings


@dataclass(frozen=True, slots=True)
class FilesSettings(Section):
    backend: Literal["local", "qiniu", "s3"]
    max_size: int
    allowed_types: list[str]
    local_dir: str
    orphan_grace: int


@dataclass(frozen=True, slots=True)
class QiniuSettings(Section):
    access_key: str
    secret_key: str
    bucket_name: str
    domain: str
    private: bool
    upload_host: str
    callback_url: str
    token_ttl: int
    download_ttl: int


@dataclass(frozen=True, slots=True)
class S3Settings(Section):
    endpoint_url: str
    region: str
    bucket: str
    access_key: str
    secret_key: str
    public_url: str
    prefix: str
    path_style: bool
    proxy_downloads: bool
    download_ttl: int
    upload_ttl: int
    multipart_threshold: int
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_pending: int
    stream_deadline: float


@dataclass(frozen=True, slots=True)
class MailSettings(Section):
    server: str
    port: int
    use_tls: bool
    use_ssl: bool
    username: str
    password: str
    default_sender: str
    admins: list[str]
    suppress: bool
    backend: Literal["console", "smtp"]
    timeout: float
    debug: bool


@dataclass(frozen=True, slots=True)
class CertSettings(Section):
    certfile: str
    keyfile: str


@dataclass(frozen=True, slots=True)
class LogSettings(Section):
    ini: str
    file: str
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    format: Literal["plain", "json"]
    mail_errors: bool
    body_limit: int
    redact: list[str]


@dataclass(frozen=True, slots=True)
class Settings(Section):
    """Every section. The section ``async`` is a Python keyword, so its attribute is ``async_``
    (``configs.async_.workers``); item access still takes the key (``configs["async"]["workers"]``)."""

    app: AppSettings
    database: DatabaseSettings
    redis: RedisSettings
    api: ApiSettings
    server: ServerSettings
    metrics: MetricsSettings
    auth: AuthSettings
    async_: AsyncSettings = field(metadata={"key": "async"})
    jobs: JobsSettings
    sms: SmsSettings
    files: FilesSettings
    qiniu: QiniuSettings
    s3: S3Settings
    mail: MailSettings
    cert: CertSettings
    log: LogSettings
