"""The one place that reads the environment.

Every process (web, worker, scheduler, release, launcher) builds a :class:`Settings`
from ``os.environ`` with casts and defaults for the embedded laptop mode. A bad value
raises :class:`SettingsError` naming the variable, and the entry points turn that into
a one-line message and a non-zero exit instead of a traceback deep inside a request.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings, Secret

ADMIN_TOKEN_FILE = "admin_token"
#: The longest retention a setting may ask for (100 years): beyond it, "now minus the
#: retention" would fall outside the dates Python and the databases handle.
MAX_RETENTION_DAYS = 36_500
#: VIDFLEET_LIBRARY_LAYOUT's values: the video files alone, or with the NFO files and
#: artwork Kodi and Jellyfin read (the same files for both).
LIBRARY_LAYOUTS = ("default", "kodi", "jellyfin")
QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


class SettingsError(Exception):
    """A configuration variable has a value we cannot use."""


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for banners, logs and error
    messages: the one in the user info (``scheme://user:password@host``) and a
    ``password=`` query parameter (redis-py and libpq accept both). A URL without a
    password comes back unchanged, and odd input never raises."""
    scheme, sep, rest = url.partition("://")
    if sep:
        # The user info ends at the last "@" before the query: a password should be
        # percent-encoded, but one with a raw "@" or "/" must not leak either (a path
        # holding "@" is masked too much, never too little). No "@" there: a password
        # with a raw "?" or "#" ends the authority early, unless it is a host[:port].
        userinfo, at, _ = re.split(r"[?#]", rest, maxsplit=1)[0].rpartition("@")
        if not at and "@" in rest:
            authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
            _, colon, port = authority.rpartition(":")
            if colon and not port.isdigit() and not authority.startswith("["):
                userinfo, at, _ = rest.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if at and colon and password:
            url = f"{scheme}://{user}:***@{rest[len(userinfo) + 1 :]}"
    return QUERY_PASSWORD.sub(r"\1***", url)


@dataclass(frozen=True)
class HookSettings:
    """Who hears of library changes (:mod:`actors.refresh_hooks`): a Jellyfin server, a
    Plex server, a signed webhook; each off while its URL is empty."""

    jellyfin_url: str = ""
    jellyfin_token: Secret | None = None
    plex_url: str = ""
    plex_token: Secret | None = None
    #: The Plex library section refreshed (its key); empty: all sections.
    plex_section: str = ""
    webhook_url: str = ""
    #: The key of the webhook's HMAC-SHA256 signature.
    webhook_secret: Secret | None = None
    #: Seconds a first change waits for others to join its batch.
    delay: float = 10.0
    #: Seconds at least between two calls to one target.
    min_interval: float = 60.0


@dataclass(frozen=True)
class Settings:
    port: int
    data_dir: Path
    media_root: Path
    database_url: str
    redis_url: str
    redis_embedded: bool
    #: The Dramatiq broker's RabbitMQ (``amqp://``, ``amqps://``); empty: the broker
    #: runs on ``redis_url`` as everything else does.
    broker_url: str
    admin_token: Secret
    viewer_token: Secret | None
    #: The key of user session cookies and CSRF tokens (VIDFLEET_SECRET_KEY); None: one
    #: derived from the admin token (web/cookies.py).
    secret_key: Secret | None
    allow_private_urls: bool
    enable_generic_extractor: bool
    allowed_origins: tuple[str, ...]
    download_time_limit: int
    max_attempts: int
    heartbeat_timeout: int
    lifeline_interval: int
    retry_backoff: float
    max_concurrent_downloads: int
    site_downloads_per_minute: int
    download_rate_limit: int
    sleep_interval: float
    max_sleep_interval: float
    stall_timeout: float
    cookies_file: Path | None
    log_level: str
    #: ``text`` (a line for people) or ``json`` (one object a line, db/logs.py).
    log_format: str
    #: The one token besides an admin's that may read ``GET /metrics``; None: admins only.
    metrics_token: Secret | None
    #: The port of each worker machine's Prometheus exposition (Dramatiq's); 0: off.
    worker_metrics_port: int
    max_filesize: int
    #: Bytes an uploaded picture (an artist's image) may have.
    max_upload_bytes: int
    #: Bytes of memory one download's process (and each program it starts) may take; 0: no cap.
    download_memory_limit: int
    max_active_jobs: int
    max_active_jobs_per_credential: int
    max_websockets: int
    max_websockets_per_credential: int
    max_replay_events: int
    events_max_mb: int
    auth_failures_per_minute: int
    #: Wrong passwords one user name may get in 15 minutes before its sign-ins wait.
    login_failures_per_user: int
    min_free_bytes: int
    db_connect_timeout: float
    db_statement_timeout: float
    redis_timeout: float
    max_transcodes: int
    max_transcodes_per_client: int
    #: The niceness of media work (workers, their downloads and FFmpeg, the web's
    #: transcodes), so the web keeps the CPU it needs to answer; 0: as the web.
    media_nice: int
    stream_cache_max_bytes: int
    stream_backend: str
    x_accel_prefix: str
    #: Days a succeeded or cancelled job is kept after it finished; 0: forever.
    job_retention_days: int
    #: Days a failed job is kept after it finished; 0: forever.
    failed_job_retention_days: int
    #: The MusicBrainz server enrichment asks (``https://musicbrainz.org``), no trailing /.
    musicbrainz_url: str
    #: An e-mail or URL for MusicBrainz's User-Agent rule: how they reach the operator.
    musicbrainz_contact: str
    #: yt-dlp's language patterns of the subtitles kept beside each video; (): none.
    subtitle_langs: tuple[str, ...]
    #: Keep the site's automatic captions too (in those languages).
    auto_captions: bool
    #: SponsorBlock categories whose segments become chapters; (): SponsorBlock off.
    sponsorblock: tuple[str, ...]
    #: What the library holds beside each video: ``default`` (nothing), ``kodi`` or
    #: ``jellyfin`` (NFO files and artwork, actors/sidecars.py).
    library_layout: str
    #: Jellyfin, Plex and webhook calls after library changes.
    hooks: HookSettings = HookSettings()

    @property
    def uses_rabbitmq(self) -> bool:
        return bool(self.broker_url)

    @property
    def embedded_redis_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def stream_cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def artists_dir(self) -> Path:
        """Each artist's image sets, in a folder named by its id."""
        return self.data_dir / "artists"

    @property
    def thumbnails_dir(self) -> Path:
        """Each video's thumbnails, in a folder named by its id."""
        return self.data_dir / "thumbnails"

    @property
    def async_database_url(self) -> str:
        """The same database through an asyncio driver (aiosqlite / psycopg async)."""
        if self.database_url.startswith("sqlite:"):
            return self.database_url.replace("sqlite:", "sqlite+aiosqlite:", 1)
        return self.database_url


def _database_url(raw: str | None, data_dir: Path) -> str:
    if not raw:
        return f"sqlite:///{data_dir / 'vidfleet.db'}"
    # Heroku-style platforms hand out postgres://, which SQLAlchemy 2 no longer accepts.
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    if not raw.startswith(("sqlite", "postgresql+")):
        raise SettingsError(f"DATABASE_URL: unsupported database URL scheme in {mask_url(raw)!r}")
    return raw


def _redis_url(raw: str | None) -> str:
    if raw and urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(
            f"REDIS_URL: expected redis://, rediss:// or unix://, got {mask_url(raw)!r}"
        )
    return raw or ""


def _broker_url(raw: str) -> str:
    if raw and urlsplit(raw).scheme not in ("amqp", "amqps"):
        raise SettingsError(
            f"BROKER_URL: expected amqp:// or amqps:// (or nothing, for the Redis broker on "
            f"REDIS_URL), got {mask_url(raw)!r}"
        )
    return raw


def _cookies_file(raw: str) -> Path | None:
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise SettingsError(f"VIDFLEET_COOKIES_FILE: {raw!r} is not a readable file")
    return path


#: English subtitles (any region) as people wrote them, and with automatic captions on,
#: YouTube's captions in the language spoken or sung (``<lang>-orig``): not every
#: translation a site offers (dozens on a popular video, each one a request that YouTube
#: answers with 429 when there are many).
SUBTITLE_LANGS = "en.*,.*-orig"
#: SponsorBlock's categories, as yt-dlp names them (``SponsorBlockPP.CATEGORIES``;
#: tests/media/test_subtitles.py keeps the two equal), and ``all``.
SPONSORBLOCK_CATEGORIES = frozenset(
    {"sponsor", "intro", "outro", "selfpromo", "preview", "filler", "interaction",
     "music_offtopic", "hook", "poi_highlight", "chapter", "all"}
)  # fmt: skip


def _subtitle_langs(raw: Sequence[str]) -> tuple[str, ...]:
    patterns = tuple(pattern for pattern in raw if pattern)
    if len(patterns) > 50:
        raise SettingsError("VIDFLEET_SUBTITLE_LANGS: at most 50 language patterns")
    for pattern in patterns:
        try:
            re.compile(pattern.removeprefix("-"))
        except re.error as exc:
            raise SettingsError(
                f"VIDFLEET_SUBTITLE_LANGS: {pattern!r} is not a language pattern "
                f"(a regular expression such as en.* or all): {exc}"
            ) from None
    return patterns


def _sponsorblock(raw: Sequence[str]) -> tuple[str, ...]:
    categories = tuple(dict.fromkeys(name.lower() for name in raw if name))
    unknown = [name for name in categories if name not in SPONSORBLOCK_CATEGORIES]
    if unknown:
        raise SettingsError(
            f"VIDFLEET_SPONSORBLOCK: unknown categories {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(SPONSORBLOCK_CATEGORIES))})"
        )
    if "all" in categories:
        return tuple(sorted(SPONSORBLOCK_CATEGORIES - {"all"}))
    return categories


def _admin_token(config: Config, data_dir: Path) -> Secret:
    token = config("VIDFLEET_ADMIN_TOKEN", default="")
    if token:
        if len(token) < 16:
            raise SettingsError("VIDFLEET_ADMIN_TOKEN: must be at least 16 characters")
        return Secret(token)
    path = data_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once agree on one token.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    return Secret(path.read_text().strip())


def _hook_url(name: str, raw: str, *, query: bool = False) -> str:
    """An http(s) URL without user info (the token has a setting of its own), nor a query
    unless ``query`` (a server's base URL, which paths are appended to, has none)."""
    url = raw.strip()
    if not query:
        url = url.rstrip("/")
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError:
        valid = False
    if not valid or "@" in parts.netloc or parts.fragment or (parts.query and not query):
        what = "an http(s) URL" if query else "an http(s) server URL without a query"
        # Not echoed: a token pasted into it would go to the logs.
        raise SettingsError(f"{name}: expected {what} and no credentials in it")
    return url


def _hook_settings(config: Config) -> HookSettings:
    """The refresh hooks' settings; a URL without its token or secret is an error."""
    hooks = HookSettings(
        jellyfin_url=_hook_url(
            "VIDFLEET_JELLYFIN_URL", config("VIDFLEET_JELLYFIN_URL", default="")
        ),
        jellyfin_token=config("VIDFLEET_JELLYFIN_TOKEN", cast=Secret, default=None) or None,
        plex_url=_hook_url("VIDFLEET_PLEX_URL", config("VIDFLEET_PLEX_URL", default="")),
        plex_token=config("VIDFLEET_PLEX_TOKEN", cast=Secret, default=None) or None,
        plex_section=config("VIDFLEET_PLEX_SECTION", default="").strip(),
        webhook_url=_hook_url(
            "VIDFLEET_WEBHOOK_URL", config("VIDFLEET_WEBHOOK_URL", default=""), query=True
        ),
        webhook_secret=config("VIDFLEET_WEBHOOK_SECRET", cast=Secret, default=None) or None,
        delay=config("VIDFLEET_HOOKS_DELAY", cast=float, default=10.0),
        min_interval=config("VIDFLEET_HOOKS_MIN_INTERVAL", cast=float, default=60.0),
    )
    for url, secret, needed in (
        (hooks.jellyfin_url, hooks.jellyfin_token, "VIDFLEET_JELLYFIN_TOKEN"),
        (hooks.plex_url, hooks.plex_token, "VIDFLEET_PLEX_TOKEN"),
        (hooks.webhook_url, hooks.webhook_secret, "VIDFLEET_WEBHOOK_SECRET"),
    ):
        if url and secret is None:
            raise SettingsError(f"{needed}: required when its URL is set")
        # Each goes into a header: a control character there would end it.
        if secret is not None and not all(" " < c <= "~" for c in str(secret)):
            raise SettingsError(f"{needed}: expected printable ASCII without spaces")
    if hooks.webhook_secret is not None and len(str(hooks.webhook_secret)) < 16:
        raise SettingsError("VIDFLEET_WEBHOOK_SECRET: must be at least 16 characters")
    if not (hooks.plex_section == "" or hooks.plex_section.isdigit()):
        raise SettingsError(
            f"VIDFLEET_PLEX_SECTION: expected a section's number, got {hooks.plex_section!r}"
        )
    if not 0 <= hooks.delay <= 3600:
        raise SettingsError("VIDFLEET_HOOKS_DELAY: must be between 0 and 3600 seconds")
    if not 0 <= hooks.min_interval <= 86400:
        raise SettingsError("VIDFLEET_HOOKS_MIN_INTERVAL: must be between 0 and 86400 seconds")
    return hooks


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default: ``os.environ``).

    Raises:
      SettingsError: when a variable has an unusable value; the message names it.
    """
    env = dict(os.environ if environ is None else environ)
    config = Config(environ=env)
    try:
        data_dir = Path(config("VIDFLEET_DATA_DIR", default="var")).resolve()
        media_root = Path(config("VIDFLEET_MEDIA_ROOT", default=str(data_dir / "media"))).resolve()
        port = config("PORT", cast=int, default=8000)
        if not 0 < port < 65536:
            raise SettingsError(f"PORT: {port} is not a TCP port")
        redis_raw = config("REDIS_URL", default="")
        viewer = config("VIDFLEET_VIEWER_TOKEN", default="")
        secret_key = config("VIDFLEET_SECRET_KEY", default="")
        metrics_token = config("VIDFLEET_METRICS_TOKEN", default="")
        if metrics_token and len(metrics_token) < 16:
            raise SettingsError("VIDFLEET_METRICS_TOKEN: must be at least 16 characters")
        if secret_key and len(secret_key) < 32:
            raise SettingsError("VIDFLEET_SECRET_KEY: must be at least 32 characters")
        settings = Settings(
            port=port,
            data_dir=data_dir,
            media_root=media_root,
            database_url=_database_url(config("DATABASE_URL", default=""), data_dir),
            redis_url=_redis_url(redis_raw) or f"unix://{data_dir / 'redis.sock'}",
            redis_embedded=not redis_raw,
            broker_url=_broker_url(config("BROKER_URL", default="").strip()),
            admin_token=_admin_token(config, data_dir),
            viewer_token=Secret(viewer) if viewer else None,
            secret_key=Secret(secret_key) if secret_key else None,
            allow_private_urls=config("VIDFLEET_ALLOW_PRIVATE_URLS", cast=bool, default=False),
            enable_generic_extractor=config(
                "VIDFLEET_ENABLE_GENERIC_EXTRACTOR", cast=bool, default=False
            ),
            allowed_origins=tuple(
                o.rstrip("/")
                for o in config("VIDFLEET_ALLOWED_ORIGINS", cast=CommaSeparatedStrings, default="")
            ),
            download_time_limit=config("VIDFLEET_DOWNLOAD_TIME_LIMIT", cast=int, default=3 * 3600),
            max_attempts=config("VIDFLEET_MAX_ATTEMPTS", cast=int, default=3),
            heartbeat_timeout=config("VIDFLEET_HEARTBEAT_TIMEOUT", cast=int, default=30),
            lifeline_interval=config("VIDFLEET_LIFELINE_INTERVAL", cast=int, default=15),
            retry_backoff=config("VIDFLEET_RETRY_BACKOFF", cast=float, default=5.0),
            max_concurrent_downloads=config(
                "VIDFLEET_MAX_CONCURRENT_DOWNLOADS", cast=int, default=4
            ),
            site_downloads_per_minute=config(
                "VIDFLEET_SITE_DOWNLOADS_PER_MINUTE", cast=int, default=0
            ),
            download_rate_limit=config("VIDFLEET_DOWNLOAD_RATE_LIMIT", cast=int, default=0),
            sleep_interval=config("VIDFLEET_SLEEP_INTERVAL", cast=float, default=0.0),
            max_sleep_interval=config("VIDFLEET_MAX_SLEEP_INTERVAL", cast=float, default=0.0),
            stall_timeout=config("VIDFLEET_STALL_TIMEOUT", cast=float, default=60.0),
            cookies_file=_cookies_file(config("VIDFLEET_COOKIES_FILE", default="")),
            log_level=config("VIDFLEET_LOG_LEVEL", default="INFO").upper(),
            log_format=config("VIDFLEET_LOG_FORMAT", default="text").lower(),
            metrics_token=Secret(metrics_token) if metrics_token else None,
            worker_metrics_port=config("VIDFLEET_WORKER_METRICS_PORT", cast=int, default=0),
            max_filesize=config("VIDFLEET_MAX_FILESIZE", cast=int, default=4 * 1024**3),
            max_upload_bytes=config("VIDFLEET_MAX_UPLOAD_BYTES", cast=int, default=20 * 1024**2),
            download_memory_limit=config("VIDFLEET_DOWNLOAD_MEMORY_MB", cast=int, default=1024)
            * 1024**2,
            max_active_jobs=config("VIDFLEET_MAX_ACTIVE_JOBS", cast=int, default=20_000),
            max_active_jobs_per_credential=config(
                "VIDFLEET_MAX_ACTIVE_JOBS_PER_CREDENTIAL", cast=int, default=10_000
            ),
            max_websockets=config("VIDFLEET_MAX_WEBSOCKETS", cast=int, default=4_096),
            max_websockets_per_credential=config(
                "VIDFLEET_MAX_WEBSOCKETS_PER_CREDENTIAL", cast=int, default=1_024
            ),
            max_replay_events=config("VIDFLEET_MAX_REPLAY_EVENTS", cast=int, default=5_000),
            events_max_mb=config("VIDFLEET_EVENTS_MAX_MB", cast=int, default=64),
            auth_failures_per_minute=config(
                "VIDFLEET_AUTH_FAILURES_PER_MINUTE", cast=int, default=10
            ),
            login_failures_per_user=config("VIDFLEET_LOGIN_FAILURES_PER_USER", cast=int, default=5),
            min_free_bytes=config("VIDFLEET_MIN_FREE_MB", cast=int, default=512) * 1024**2,
            db_connect_timeout=config("VIDFLEET_DB_CONNECT_TIMEOUT", cast=float, default=5.0),
            db_statement_timeout=config("VIDFLEET_DB_STATEMENT_TIMEOUT", cast=float, default=30.0),
            redis_timeout=config("VIDFLEET_REDIS_TIMEOUT", cast=float, default=10.0),
            max_transcodes=config(
                "VIDFLEET_MAX_TRANSCODES", cast=int, default=2 * (os.cpu_count() or 1)
            ),
            max_transcodes_per_client=config(
                "VIDFLEET_MAX_TRANSCODES_PER_CLIENT", cast=int, default=2
            ),
            media_nice=config("VIDFLEET_MEDIA_NICE", cast=int, default=19),
            stream_cache_max_bytes=config(
                "VIDFLEET_STREAM_CACHE_MAX_BYTES", cast=int, default=10 * 1024**3
            ),
            stream_backend=config("VIDFLEET_STREAM_BACKEND", default="ffmpeg").lower(),
            x_accel_prefix=config("VIDFLEET_X_ACCEL_PREFIX", default=""),
            job_retention_days=config("VIDFLEET_JOB_RETENTION_DAYS", cast=int, default=30),
            failed_job_retention_days=config(
                "VIDFLEET_FAILED_JOB_RETENTION_DAYS", cast=int, default=90
            ),
            musicbrainz_url=config(
                "VIDFLEET_MUSICBRAINZ_URL", default="https://musicbrainz.org"
            ).rstrip("/"),
            musicbrainz_contact=config("VIDFLEET_MUSICBRAINZ_CONTACT", default="").strip(),
            library_layout=config("VIDFLEET_LIBRARY_LAYOUT", default="default").strip().lower(),
            hooks=_hook_settings(config),
            subtitle_langs=_subtitle_langs(
                config(
                    "VIDFLEET_SUBTITLE_LANGS", cast=CommaSeparatedStrings, default=SUBTITLE_LANGS
                )
            ),
            auto_captions=config("VIDFLEET_AUTO_CAPTIONS", cast=bool, default=False),
            sponsorblock=_sponsorblock(
                config("VIDFLEET_SPONSORBLOCK", cast=CommaSeparatedStrings, default="")
            ),
        )
    except ValueError as exc:  # Starlette's casts say "Config 'NAME' has value ..."
        raise SettingsError(str(exc)) from None
    if settings.download_time_limit < 1:
        raise SettingsError("VIDFLEET_DOWNLOAD_TIME_LIMIT: must be a positive number of seconds")
    if settings.heartbeat_timeout < 3:
        raise SettingsError("VIDFLEET_HEARTBEAT_TIMEOUT: must be at least 3 seconds")
    if not 1 <= settings.lifeline_interval <= 3600:
        raise SettingsError("VIDFLEET_LIFELINE_INTERVAL: must be between 1 and 3600 seconds")
    if not 0 < settings.retry_backoff <= 3600:
        raise SettingsError("VIDFLEET_RETRY_BACKOFF: must be between 0 and 3600 seconds")
    if settings.max_concurrent_downloads < 1:
        raise SettingsError("VIDFLEET_MAX_CONCURRENT_DOWNLOADS: must be at least 1")
    if settings.max_transcodes < 0 or settings.max_transcodes_per_client < 0:
        raise SettingsError("VIDFLEET_MAX_TRANSCODES(_PER_CLIENT): must be 0 or more")
    if not 0 <= settings.media_nice <= 19:
        raise SettingsError("VIDFLEET_MEDIA_NICE: must be a niceness from 0 to 19")
    for name, value in (
        ("VIDFLEET_SITE_DOWNLOADS_PER_MINUTE", settings.site_downloads_per_minute),
        ("VIDFLEET_DOWNLOAD_RATE_LIMIT", settings.download_rate_limit),
        ("VIDFLEET_SLEEP_INTERVAL", settings.sleep_interval),
        ("VIDFLEET_MAX_SLEEP_INTERVAL", settings.max_sleep_interval),
        ("VIDFLEET_MAX_FILESIZE", settings.max_filesize),
        ("VIDFLEET_DOWNLOAD_MEMORY_MB", settings.download_memory_limit),
        ("VIDFLEET_MIN_FREE_MB", settings.min_free_bytes),
        ("VIDFLEET_STREAM_CACHE_MAX_BYTES", settings.stream_cache_max_bytes),
    ):
        if value < 0:
            raise SettingsError(f"{name}: must not be negative (0 turns it off)")
    if not 1 <= settings.stall_timeout <= 3600:
        raise SettingsError("VIDFLEET_STALL_TIMEOUT: must be between 1 and 3600 seconds")
    for name, value in (
        ("VIDFLEET_MAX_ACTIVE_JOBS", settings.max_active_jobs),
        ("VIDFLEET_MAX_ACTIVE_JOBS_PER_CREDENTIAL", settings.max_active_jobs_per_credential),
        ("VIDFLEET_MAX_WEBSOCKETS", settings.max_websockets),
        ("VIDFLEET_MAX_WEBSOCKETS_PER_CREDENTIAL", settings.max_websockets_per_credential),
        ("VIDFLEET_MAX_REPLAY_EVENTS", settings.max_replay_events),
        ("VIDFLEET_EVENTS_MAX_MB", settings.events_max_mb),
        ("VIDFLEET_MAX_UPLOAD_BYTES", settings.max_upload_bytes),
        ("VIDFLEET_AUTH_FAILURES_PER_MINUTE", settings.auth_failures_per_minute),
        ("VIDFLEET_LOGIN_FAILURES_PER_USER", settings.login_failures_per_user),
    ):
        if value < 1:
            raise SettingsError(f"{name}: must be at least 1")
    for name, value in (
        ("VIDFLEET_DB_CONNECT_TIMEOUT", settings.db_connect_timeout),
        ("VIDFLEET_DB_STATEMENT_TIMEOUT", settings.db_statement_timeout),
        ("VIDFLEET_REDIS_TIMEOUT", settings.redis_timeout),
    ):
        if not 0.1 <= value <= 3600:
            raise SettingsError(f"{name}: must be between 0.1 and 3600 seconds")
    for name, value in (
        ("VIDFLEET_JOB_RETENTION_DAYS", settings.job_retention_days),
        ("VIDFLEET_FAILED_JOB_RETENTION_DAYS", settings.failed_job_retention_days),
    ):
        if not 0 <= value <= MAX_RETENTION_DAYS:
            raise SettingsError(
                f"{name}: must be between 0 (keep forever) and {MAX_RETENTION_DAYS} days"
            )
    if settings.max_attempts < 1:
        raise SettingsError("VIDFLEET_MAX_ATTEMPTS: must be at least 1")
    prefix = settings.x_accel_prefix
    if prefix and not (prefix.startswith("/") and prefix.endswith("/") and len(prefix) > 2):
        raise SettingsError(
            f"VIDFLEET_X_ACCEL_PREFIX: expected a path like /_library/, got {prefix!r}"
        )
    if settings.stream_backend not in ("ffmpeg", "vlc"):
        raise SettingsError(
            f"VIDFLEET_STREAM_BACKEND: expected ffmpeg or vlc, got {settings.stream_backend!r}"
        )
    if settings.library_layout not in LIBRARY_LAYOUTS:
        raise SettingsError(
            f"VIDFLEET_LIBRARY_LAYOUT: expected one of {', '.join(LIBRARY_LAYOUTS)}, "
            f"got {settings.library_layout!r}"
        )
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"VIDFLEET_LOG_LEVEL: unknown level {settings.log_level!r}")
    if settings.log_format not in ("text", "json"):
        raise SettingsError(
            f"VIDFLEET_LOG_FORMAT: expected text or json, got {settings.log_format!r}"
        )
    if not 0 <= settings.worker_metrics_port < 65536:
        raise SettingsError(
            f"VIDFLEET_WORKER_METRICS_PORT: {settings.worker_metrics_port} is not a TCP port"
        )
    try:
        parts = urlsplit(settings.musicbrainz_url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(
            f"VIDFLEET_MUSICBRAINZ_URL: expected an http(s) server URL, got "
            f"{mask_url(settings.musicbrainz_url)!r}"
        )
    contact = settings.musicbrainz_contact
    # It goes into a header: printable ASCII only, and no parenthesis to end its comment.
    if len(contact) > 200 or not all(" " <= c <= "~" and c not in "()" for c in contact):
        raise SettingsError(
            "VIDFLEET_MUSICBRAINZ_CONTACT: expected an e-mail address or URL (printable "
            "ASCII without parentheses, at most 200 characters)"
        )
    for origin in settings.allowed_origins:
        if urlsplit(origin).scheme not in ("http", "https"):
            raise SettingsError(f"VIDFLEET_ALLOWED_ORIGINS: {origin!r} is not an http(s) origin")
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once.

    A bad value ends the process with one line naming the variable (no traceback):
    every entry point (web, worker, scheduler, release) gets its settings here.
    """
    # Every process starts here, so from now on all it creates - the database, the
    # admin token, Redis's AOF and socket, media, temp downloads - is 0600/0700: the
    # data dir holds credentials and a private library, not for other local users.
    # (Children such as redis-server and ffmpeg inherit the umask.)
    os.umask(0o077)
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"vidfleet: bad configuration: {exc}") from None
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return settings
