"""Settings for this machine, deep-merged over config_default.py.

Only the keys you write here change; the rest keep their defaults. The environment still wins over this
file (DATABASE_URL, REDIS_URL, SECRET_KEY, APP_ENV, APP_<SECTION>__<KEY>). Examples:

configs = {
    "database": {"url": "postgresql://app:secret@127.0.0.1:5432/app"},
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "sms": {"gateway": "file"},
    "qiniu": {
        "access_key": "your-ak",
        "secret_key": "your-sk",
        "bucket_name": "uploads",
        "domain": "https://cdn.example.com",
    },
    "cert": {"certfile": "/etc/ssl/api.pem", "keyfile": "/etc/ssl/api.key"},
}
"""

configs: dict = {}
