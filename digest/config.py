"""digest.toml and DIGEST_* environment overrides → validated, immutable settings.

Every setting has a name, a default and one line of help (docs/configuration.md lists them
all; a test keeps that page complete). Secrets never live in the file: the token key comes
from DIGEST_SECRET_KEY (or a key file the operator points at), the SendGrid key from
SENDGRID_API_KEY.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from digest.deliver.limits import SendLimits
from digest.errors import ConfigError
from digest.models import Topic
from digest.slots import parse_send_window, schedule_trigger

SCHEMA_VERSION = 1

_WINDOW = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_WINDOW_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_window(value: str) -> timedelta:
    """'7d' → 7 days; units h, d, w."""
    match = _WINDOW.match(value)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"window must look like 12h, 7d or 2w, not {value!r}")
    return timedelta(**{_WINDOW_UNITS[match.group(2)]: int(match.group(1))})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicConfig(_Strict):
    name: str = Field(min_length=1, description="Section heading shown to readers.")
    keywords: tuple[str, ...] = Field(
        default=(), description="Words or phrases that put an article in this topic."
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="Words or phrases that keep an article out of this topic."
    )
    categories: tuple[str, ...] = Field(
        default=(), description="Feed categories (tags) that put an article in this topic."
    )
    sources: tuple[str, ...] = Field(
        default=(), description="Sources (by name) whose articles all go to this topic."
    )

    def to_topic(self) -> Topic:
        return Topic(
            name=self.name,
            keywords=self.keywords,
            exclude=self.exclude,
            categories=self.categories,
            sources=self.sources,
        )


class SourceConfig(_Strict):
    name: str = Field(min_length=1, description="Unique name, shown in summaries and errors.")
    url: str = Field(
        min_length=1,
        description="http(s) URL, or a file/folder path relative to digest.toml.",
    )
    title: str = Field(
        default="", description="Name shown to readers (default: the feed's title, else name)."
    )
    kind: Literal["auto", "feed", "page", "file"] = Field(
        default="auto", description="What the URL holds; auto decides from the content."
    )
    full_text: bool = Field(
        default=False,
        description="Fetch each new feed item's page when the feed carries only a summary.",
    )
    weight: float = Field(
        default=1.0, ge=0, le=10, description="How strongly its stories rank (1 = neutral)."
    )
    every: int = Field(
        default=60, ge=1, le=10080, description="Minutes between fetches under `digest serve`."
    )


# Values that end up in mail headers (From, Reply-To, List-Id, List-Unsubscribe, Subject):
# a line break there would start a header of its own, so the file is refused at load.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line, without control characters (it goes in mail headers)")
    return value


class DigestConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Id used on the command line.")
    title: str = Field(min_length=1, description="Shown in the email header and subject.")
    list: str = Field(default="", description="Subscriber list that receives it (default: name).")
    schedule: str = Field(
        default="0 8 * * mon", description="Crontab line (minute hour day month weekday)."
    )
    timezone: str = Field(default="UTC", description="IANA zone for the schedule and dates.")
    locale: str = Field(
        default="en", description="Language of the email: words, dates, numbers (en, de, pt-BR)."
    )
    window: str = Field(default="7d", description="How far back articles are taken: 12h, 7d, 2w.")
    template: str = Field(default="digest", description="Template name under templates/.")
    images: bool = Field(default=True, description="Show an article's picture when it has one.")
    max_per_section: int = Field(default=6, ge=1, le=50, description="Items per section.")
    max_items: int = Field(default=30, ge=1, le=200, description="Items per issue, in all.")
    min_new: int = Field(
        default=1, ge=1, description="Fewest new articles worth an issue; fewer: no issue."
    )
    pin: tuple[str, ...] = Field(
        default=(), description="Article URLs (or ids) put first in their section."
    )
    grouping: Literal["tfidf", "embeddings"] = Field(
        default="tfidf",
        description="How unclaimed articles are clustered: TF-IDF, or the [embeddings] extra.",
    )
    cadence: Literal["all", "daily", "weekly"] = Field(
        default="all",
        description="Who gets it: all on the list, or those who chose daily / weekly.",
    )
    section_order: Literal["config", "weight"] = Field(
        default="config",
        description="Editor topics in file order, or every section by weight.",
    )
    auto_approve: bool = Field(default=True, description="Send without an editor's approval.")
    late_after: float = Field(
        default=12, gt=0, description="Hours after its slot an issue is still sent by itself."
    )
    send_window: str = Field(
        default="", description='Local hours sending may happen, e.g. "08:00-20:00" (empty: any).'
    )
    editors: tuple[str, ...] = Field(
        default=(), description="Addresses told when an issue waits for approval."
    )
    topics: tuple[TopicConfig, ...] = Field(default=(), description="Sections, by priority.")

    @field_validator("title")
    @classmethod
    def _title_one_line(cls, value: str) -> str:
        return _one_line(value)

    @field_validator("send_window")
    @classmethod
    def _valid_send_window(cls, value: str) -> str:
        if value.strip():
            parse_send_window(value)
        return value.strip()

    @field_validator("editors")
    @classmethod
    def _editor_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not re.match(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$", address):
                raise ValueError(f"{address!r} is not an email address")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        try:
            Locale.parse(value.replace("-", "_"))
        except (UnknownLocaleError, ValueError) as error:
            raise ValueError(f"unknown locale {value!r} (use a tag like en, de, pt-BR)") from error
        return value

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("schedule")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"schedule must be a 5-field crontab line, not {value!r}")
        schedule_trigger(value, ZoneInfo("UTC"))  # a bad field fails at load, not at 8 am
        return value

    @property
    def list_name(self) -> str:
        return self.list or self.name

    @property
    def window_length(self) -> timedelta:
        return parse_window(self.window)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def topic_rules(self) -> tuple[Topic, ...]:
        return tuple(topic.to_topic() for topic in self.topics)


class MailConfig(_Strict):
    url: str = Field(
        default="file://outbox",
        description="file://DIR, smtp://user:pass@host:port?starttls=1 or sendgrid://",
    )
    sender: str = Field(
        default="Digest <digest@localhost>", description="From header: 'Name <address>'."
    )
    reply_to: str = Field(default="", description="Reply-To header, if replies go elsewhere.")
    rate: float = Field(
        default=0, ge=0, description="Messages per second at most (0: as fast as it goes)."
    )
    domain_rate: float = Field(
        default=0, ge=0, description="Messages per second to one recipient domain (0: no cap)."
    )
    pause_after: int = Field(
        default=50, ge=0, description="Consecutive failed messages that pause a send (0: never)."
    )
    workers: bool = Field(
        default=False,
        description=(
            "Sends (scheduled, due and `digest send`) go out through `digest worker` processes "
            "on the broker at $DIGEST_BROKER_URL."
        ),
    )

    @field_validator("sender", "reply_to")
    @classmethod
    def _header_one_line(cls, value: str) -> str:
        return _one_line(value)

    @model_validator(mode="after")
    def _workers_keep_no_shared_rate(self) -> MailConfig:
        # Each worker would keep its own token buckets: N workers, N times the rate.
        if self.workers and (self.rate or self.domain_rate):
            raise ValueError(
                "workers = true cannot keep rate or domain_rate (each worker would apply its "
                "own); set them to 0 or send without workers"
            )
        return self

    def send_limits(self) -> SendLimits:
        return SendLimits(
            rate=self.rate, domain_rate=self.domain_rate, pause_after=self.pause_after
        )


class FetchConfig(_Strict):
    concurrency: int = Field(default=10, ge=1, le=100, description="Requests in flight at once.")
    per_host: int = Field(default=2, ge=1, le=20, description="Requests in flight per host.")
    timeout: float = Field(
        default=60, gt=0, le=600, description="Seconds one document may take in all."
    )
    max_bytes: int = Field(
        default=10_000_000, ge=10_000, description="Largest document read (after decompression)."
    )


class SchedulerConfig(_Strict):
    misfire_grace: int = Field(
        default=60,
        ge=1,
        le=10080,
        description=(
            "Minutes a missed fetch or due-check may still run late (after a restart); a "
            "digest's missed slot always runs, and its late cut-off decides."
        ),
    )
    due_every: int = Field(
        default=1, ge=1, le=60, description="Minutes between checks for approved issues to send."
    )


class FileSettings(_Strict):
    version: Literal[1] = Field(description="Schema version of this file.")
    name: str = Field(default="digest", description="Publication name, used in List-Id.")
    base_url: str = Field(
        default="http://127.0.0.1:8000", description="Public URL of `digest serve`, for links."
    )
    database_url: str = Field(
        default="sqlite:///digest.db", description="SQLAlchemy URL; SQLite paths are relative."
    )
    secret_key_file: str = Field(
        default="", description="File holding the token key when DIGEST_SECRET_KEY is unset."
    )
    templates_dir: str = Field(
        default="templates", description="Folder of your own templates, tried before ours."
    )
    logo: str = Field(
        default="", description="https URL of a logo shown atop every email (wide, ≤ 600 px)."
    )
    postal_address: str = Field(
        default="", description="Your postal address, in every email's footer (anti-spam laws)."
    )
    mail: MailConfig = Field(default_factory=MailConfig)

    @field_validator("logo")
    @classmethod
    def _logo_is_a_web_address(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"logo must be an http(s) URL mail clients can load, not {value!r}")
        return value

    fetch: FetchConfig = Field(default_factory=FetchConfig, description="Limits on every download.")
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="How `digest serve` runs its jobs."
    )
    sources: tuple[SourceConfig, ...] = Field(default=(), description="Where articles come from.")
    digests: tuple[DigestConfig, ...] = Field(default=(), description="What is sent, to whom.")


class Settings(BaseModel):
    """The loaded configuration: file settings with env overrides applied, paths resolved."""

    model_config = ConfigDict(frozen=True)

    path: Path
    file: FileSettings
    # Out of repr: the key is a secret, and the URLs may carry passwords (a logged or
    # printed Settings must not show them).
    database_url: str = Field(repr=False)
    mail_url: str = Field(repr=False)
    base_url: str
    secret_key: str = Field(repr=False)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def sources(self) -> tuple[SourceConfig, ...]:
        return self.file.sources

    @property
    def digests(self) -> tuple[DigestConfig, ...]:
        return self.file.digests

    @property
    def templates_dir(self) -> Path:
        return self.root / self.file.templates_dir

    def digest(self, name: str | None) -> DigestConfig:
        if not self.digests:
            raise ConfigError(f"{self.path}: no [[digests]] defined")
        if name is None:
            return self.digests[0]
        for digest in self.digests:
            if digest.name == name:
                return digest
        known = ", ".join(d.name for d in self.digests)
        raise ConfigError(f"{self.path}: no digest named {name!r} (known: {known})")

    def source_location(self, source: SourceConfig) -> str:
        """An http(s) URL as is; anything else as an absolute path beside digest.toml."""
        if source.url.startswith(("http://", "https://")):
            return source.url
        path = Path(source.url.removeprefix("file://")).expanduser()
        return str(path if path.is_absolute() else (self.root / path).resolve())

    def require_secret_key(self) -> str:
        if not self.secret_key:
            raise ConfigError(
                "DIGEST_SECRET_KEY is not set (nor secret_key_file in "
                f"{self.path}); it signs unsubscribe links"
            )
        return self.secret_key


def _field_path(location: tuple[int | str, ...], data: Mapping[str, object]) -> str:
    """('digests', 0, 'timezone') → 'digests[0].timezone' (with the digest's name if known)."""
    parts: list[str] = []
    node: object = data
    for step in location:
        if isinstance(step, int):
            label = f"[{step}]"
            if isinstance(node, list) and step < len(node) and isinstance(node[step], dict):
                name = node[step].get("name")
                if name:
                    label = f"[{step}: {name}]"
            parts.append(label)
            node = node[step] if isinstance(node, list) and step < len(node) else None
        else:
            parts.append(("." if parts else "") + str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _resolve_database_url(url: str, root: Path) -> str:
    """Relative SQLite paths are relative to digest.toml, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url.removeprefix(prefix))
        if not path.is_absolute():
            return prefix + str((root / path).resolve())
    return url


def _resolve_mail_url(url: str, root: Path) -> str:
    prefix = "file://"
    if url.startswith(prefix):
        path = Path(url.removeprefix(prefix)).expanduser()
        if not path.is_absolute():
            return prefix + str((root / path).resolve())
    return url


def parse_settings(text: str, path: Path, env: Mapping[str, str]) -> Settings:
    """Validate the text of a digest.toml; errors name the file, the field and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    try:
        file = FileSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = _field_path(tuple(first["loc"]), data)
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {message}{more}") from error
    _check_unique(path, "sources", [s.name for s in file.sources])
    _check_unique(path, "digests", [d.name for d in file.digests])
    _check_topic_sources(path, file)
    _check_grouping(path, file)
    root = path.parent.resolve()
    secret = env.get("DIGEST_SECRET_KEY", "")
    if not secret and file.secret_key_file:
        key_path = Path(file.secret_key_file).expanduser()
        key_path = key_path if key_path.is_absolute() else root / key_path
        try:
            secret = key_path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"{path}: secret_key_file: cannot read {key_path}: {error.strerror}"
            ) from error
    return Settings(
        path=path.resolve(),
        file=file,
        database_url=_resolve_database_url(
            env.get("DIGEST_DATABASE_URL") or file.database_url, root
        ),
        mail_url=_resolve_mail_url(env.get("DIGEST_MAIL_URL") or file.mail.url, root),
        base_url=_base_url(path, env.get("DIGEST_BASE_URL") or file.base_url),
        secret_key=secret,
    )


def _base_url(path: Path, url: str) -> str:
    """The public address, from DIGEST_BASE_URL or the file; it goes in List-Unsubscribe."""
    if _CONTROL.search(url):
        raise ConfigError(f"{path}: base_url: must be one line, without control characters")
    return url.rstrip("/")


def _check_topic_sources(path: Path, file: FileSettings) -> None:
    """A topic's `sources` must name configured sources: a typo would silently match nothing."""
    known = {s.name.casefold() for s in file.sources} | {
        s.title.casefold() for s in file.sources if s.title
    }
    for digest in file.digests:
        for topic in digest.topics:
            for name in topic.sources:
                if name.casefold() not in known:
                    raise ConfigError(
                        f"{path}: digests[{digest.name}].topics[{topic.name}].sources: "
                        f"no source is named {name!r}"
                    )


def _check_grouping(path: Path, file: FileSettings) -> None:
    """A digest grouping by embeddings fails at start-up, not mid-run, without its extra."""
    wanting = [digest for digest in file.digests if digest.grouping == "embeddings"]
    if not wanting:
        return  # numpy stays out of every command's start-up
    from digest.embeddings import extra_installed  # looks for the packages, loads nothing

    if not extra_installed():
        raise ConfigError(
            f'{path}: digests[{wanting[0].name}].grouping: "embeddings" needs the optional '
            "[embeddings] extra: pip install 'digest[embeddings]'"
        )


def _check_unique(path: Path, table: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{path}: {table}: the name {name!r} is used twice")
        seen.add(name)


def load_settings(path: Path | None, env: Mapping[str, str]) -> Settings:
    """Read digest.toml from `path`, else $DIGEST_CONFIG, else ./digest.toml."""
    chosen = path or Path(env.get("DIGEST_CONFIG") or "digest.toml")
    try:
        text = chosen.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ConfigError(f"{chosen}: no such file (run `digest init` or `digest demo`)") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{chosen}: cannot read: {error}") from error
    return parse_settings(text, chosen, env)
