"""Scaffolding: the folders `digest demo` and `digest init` write for a new operator.

The demo's sample files live in digest/samples/demo as Jinja templates (`*.j2`) so that their
dates are always recent: `write_demo` renders them against the `now` it is given, with
`{{ ago(hours=5) | rfc822 }}`, `| iso` and `| seed` ("Nov 3, 2026 - 09:30", UTC). Files
without the suffix are copied as they are. digest/samples/starter holds `digest init`'s file.

Re-running the demo on its own folder rewrites the demo's files (config, sources,
subscribers.csv) and keeps what the pipeline made there (digest.db, outbox/) and the existing
.secret_key, so links in messages already written keep working. Any other non-empty folder is
refused rather than written into.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

from digest.errors import ConfigError
from digest.render.environment import bundled_templates_dir

log = logging.getLogger(__name__)

CONFIG_NAME = "digest.toml"
SUBSCRIBERS_NAME = "subscribers.csv"
SOURCES_DIR = "sources"
SECRET_KEY_NAME = ".secret_key"
TEMPLATE_SUFFIX = ".j2"
# The first line of the demo's digest.toml: how a later `digest demo` knows the file is its own.
DEMO_MARKER = "# Demo digest, written by `digest demo`."

# English month abbreviations, fixed here so the seed-style date line ignores the locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """What `write_demo` wrote: the folder, its config, subscribers and source files."""

    folder: Path
    config: Path
    subscribers_csv: Path
    sources: tuple[Path, ...]


def write_demo(folder: Path, *, now: datetime, secret: str) -> DemoFiles:
    """Write a runnable demo into `folder`: digest.toml, sources/, subscribers.csv, .secret_key.

    Sample dates are placed before `now` (timezone-aware); the same `now` writes the same bytes.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not secret.strip():
        raise ValueError("secret must not be empty")
    _check_demo_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = _write_samples(_samples("demo"), folder, _sample_environment(now.astimezone(UTC)))
    secret_path = folder / SECRET_KEY_NAME
    if not secret_path.exists():
        _write_private(secret_path, secret.strip() + "\n")
    sources_dir = folder / SOURCES_DIR
    return DemoFiles(
        folder=folder,
        config=folder / CONFIG_NAME,
        subscribers_csv=folder / SUBSCRIBERS_NAME,
        sources=tuple(sorted(path for path in written if path.parent == sources_dir)),
    )


def write_starter(folder: Path) -> Path:
    """`digest init`: a commented starter digest.toml plus editable copies of the templates."""
    config = folder / CONFIG_NAME
    if config.exists():
        raise ConfigError(f"{config}: already exists; edit it, or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    config.write_bytes((_samples("starter") / CONFIG_NAME).read_bytes())
    _copy_missing(bundled_templates_dir(), folder / "templates")
    return config


def _check_demo_folder(folder: Path) -> None:
    """Only a new or empty folder, or one holding an earlier demo, is written into."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder")
    config = folder / CONFIG_NAME
    if config.exists():
        if not _is_demo_config(config):
            raise ConfigError(
                f"{config}: exists and was not written by `digest demo`; choose another folder"
            )
    elif any(folder.iterdir()):
        raise ConfigError(f"{folder}: not empty; `digest demo` needs a new or empty folder")


def _is_demo_config(config: Path) -> bool:
    try:
        with config.open(encoding="utf-8") as file:
            return file.readline().startswith(DEMO_MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def _samples(name: str) -> Traversable:
    return resources.files("digest") / "samples" / name


def _sample_environment(now: datetime) -> jinja2.Environment:
    """Jinja for sample data files: only the date helpers, no HTML escaping.

    The samples are XML, JSON and plain text written by us; HTML autoescaping would be wrong
    for them, and the only values inserted are dates.
    """
    env = jinja2.Environment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )

    def ago(days: int = 0, hours: int = 0, minutes: int = 0) -> datetime:
        return now - timedelta(days=days, hours=hours, minutes=minutes)

    env.globals["ago"] = ago
    env.filters["rfc822"] = rfc822_date
    env.filters["iso"] = iso_date
    env.filters["seed"] = seed_date
    return env


def rfc822_date(moment: datetime) -> str:
    """RSS pubDate form: 'Mon, 23 Nov 2026 09:30:00 GMT'."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def iso_date(moment: datetime) -> str:
    """Atom / JSON Feed / HTML meta form: '2026-11-23T09:30:00+00:00'."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def seed_date(moment: datetime) -> str:
    """The plain-text article's date line: 'Nov 23, 2026 - 09:30' (UTC).

    The dash sits between no-break spaces, as in the reference article the format comes from.
    """
    utc = moment.astimezone(UTC)
    return f"{_MONTHS[utc.month - 1]} {utc.day}, {utc.year}\u00a0-\u00a0{utc:%H:%M}"


def _write_samples(tree: Traversable, target: Path, env: jinja2.Environment) -> list[Path]:
    """Render `*.j2` files (dropping the suffix) and copy the rest; returns the paths written."""
    written: list[Path] = []
    for entry in sorted(tree.iterdir(), key=lambda item: item.name):
        if entry.is_dir():
            (target / entry.name).mkdir(exist_ok=True)
            written.extend(_write_samples(entry, target / entry.name, env))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            path = target / entry.name.removesuffix(TEMPLATE_SUFFIX)
            text = env.from_string(entry.read_text(encoding="utf-8")).render()
            path.write_bytes(text.encode("utf-8"))
            written.append(path)
        else:
            path = target / entry.name
            path.write_bytes(entry.read_bytes())
            written.append(path)
    return written


def _write_private(path: Path, text: str) -> None:
    """Create a file only its owner can read (mode 600 from the start, not after the write)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    path.chmod(0o600)  # an unusual umask may have cleared owner bits; make it exactly 600


def _copy_missing(source: Path, target: Path) -> None:
    """Copy a folder tree, keeping any file the operator already has at the same place."""
    target.mkdir(parents=True, exist_ok=True)
    if not source.is_dir():
        log.warning("bundled templates not found at %s; %s left empty", source, target)
        return
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(exist_ok=True)
        elif not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
