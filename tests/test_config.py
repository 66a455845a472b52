"""digest.toml loading: validation, env overrides, path resolution, documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from digest.config import (
    DigestConfig,
    FetchConfig,
    FileSettings,
    MailConfig,
    SourceConfig,
    TopicConfig,
    load_settings,
    parse_settings,
)
from digest.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
MINIMAL = 'version = 1\n[[digests]]\nname = "weekly"\ntitle = "Weekly"\n'


def settings(text: str, tmp_path: Path, env: dict[str, str] | None = None):
    return parse_settings(text, tmp_path / "digest.toml", env or {})


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    loaded = settings(
        MINIMAL + '[[sources]]\nname = "a"\nurl = "feeds/a.xml"\n'
        '[[sources]]\nname = "b"\nurl = "https://example.org/feed"\n',
        tmp_path,
    )
    assert loaded.database_url == f"sqlite:///{tmp_path.resolve()}/digest.db"
    assert loaded.mail_url == f"file://{tmp_path.resolve()}/outbox"
    first, second = loaded.sources
    assert loaded.source_location(first) == str(tmp_path.resolve() / "feeds" / "a.xml")
    assert loaded.source_location(second) == "https://example.org/feed"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "DIGEST_DATABASE_URL": "postgresql+psycopg://u@db/digest",
        "DIGEST_MAIL_URL": "smtp://mail:2525",
        "DIGEST_BASE_URL": "https://news.example.org/",
        "DIGEST_SECRET_KEY": "s3cret",
    }
    loaded = settings(MINIMAL, tmp_path, env)
    assert loaded.database_url == "postgresql+psycopg://u@db/digest"
    assert loaded.mail_url == "smtp://mail:2525"
    assert loaded.base_url == "https://news.example.org"
    assert loaded.require_secret_key() == "s3cret"


def test_secret_key_comes_from_a_key_file_when_the_env_is_silent(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file\n")
    loaded = settings('secret_key_file = "key"\n' + MINIMAL, tmp_path)
    assert loaded.require_secret_key() == "from-file"
    assert (
        settings(
            'secret_key_file = "key"\n' + MINIMAL, tmp_path, {"DIGEST_SECRET_KEY": "env"}
        ).secret_key
        == "env"
    )


def test_sending_without_a_secret_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY is not set"):
        settings(MINIMAL, tmp_path).require_secret_key()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version = 2\n", "version: Input should be 1"),
        ("version = 1\nsurprise = 1\n", "surprise: Extra inputs are not permitted"),
        (MINIMAL + 'window = "soon"\n', "digests[0: weekly].window: window must look like"),
        (MINIMAL + 'schedule = "daily"\n', "digests[0: weekly].schedule: schedule must be"),
        (MINIMAL + '[[digests.topics]]\nname = ""\n', "digests[0: weekly].topics[0].name"),
        (MINIMAL + MINIMAL.replace("version = 1\n", ""), "digests: the name 'weekly' is used"),
        ("version = 1\n[[sources]]\nname = 'a'\n", "sources[0: a].url: Field required"),
        ("version = [", "not valid TOML"),
    ],
)
def test_errors_name_the_file_the_field_and_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(text, tmp_path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "digest.toml") + ": ")
    assert expected in message
    assert "\n" not in message


def test_load_settings_uses_digest_config_env(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(MINIMAL)
    assert load_settings(None, {"DIGEST_CONFIG": str(path)}).path == path.resolve()
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml", {})


def test_unknown_digest_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no digest named 'daily' \(known: weekly\)"):
        settings(MINIMAL, tmp_path).digest("daily")


@pytest.mark.parametrize(
    "model", [FileSettings, MailConfig, FetchConfig, SourceConfig, DigestConfig, TopicConfig]
)
def test_every_setting_has_help_and_is_documented(model: type[BaseModel]) -> None:
    documented = DOCS.read_text(encoding="utf-8")
    for name, field in model.model_fields.items():
        assert field.description or name == "mail", f"{model.__name__}.{name} has no help"
        assert f"| `{name}` |" in documented, f"{model.__name__}.{name} is not in {DOCS.name}"


def test_a_topic_naming_an_unknown_source_is_an_error(tmp_path: Path) -> None:
    text = (
        'version = 1\n[[sources]]\nname = "courier"\nurl = "https://c.example/feed"\n'
        'title = "The Courier"\n'
        '[[digests]]\nname = "weekly"\ntitle = "W"\n'
        '[[digests.topics]]\nname = "Local"\nsources = ["The Courier", "courrier"]\n'
    )
    with pytest.raises(
        ConfigError, match=r"topics\[Local\]\.sources: no source is named 'courrier'"
    ):
        settings(text, tmp_path)
    settings(text.replace(', "courrier"', ""), tmp_path)  # the name readers see counts as well


def test_grouping_by_embeddings_without_the_extra_fails_at_load(tmp_path: Path) -> None:
    from digest.embeddings import extra_installed

    if extra_installed():
        pytest.skip("the [embeddings] extra is installed here")
    text = MINIMAL + 'grouping = "embeddings"\n'
    with pytest.raises(ConfigError, match=r"grouping: \"embeddings\" needs the optional"):
        settings(text, tmp_path)


def test_sending_through_workers_refuses_a_rate_no_one_process_keeps(tmp_path: Path) -> None:
    assert settings(MINIMAL + "[mail]\nworkers = true\n", tmp_path).file.mail.workers
    for limit in ("rate = 10", "domain_rate = 2"):
        with pytest.raises(ConfigError, match="mail: workers = true cannot keep rate"):
            settings(MINIMAL + f"[mail]\nworkers = true\n{limit}\n", tmp_path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[mail]\nsender = "News\\r\\nBcc: x@evil.example <news@example.org>"\n', "mail.sender"),
        ('[mail]\nreply_to = "desk@example.org\\nBcc: x@evil.example"\n', "mail.reply_to"),
        ('[[digests]]\nname = "daily"\ntitle = "Daily\\r\\nX-Evil: 1"\n', "title"),
        ('base_url = "https://news.example.org/\\r\\nX-Evil: 1"\n', "base_url"),
    ],
)
def test_values_that_go_into_mail_headers_must_be_one_line(
    tmp_path: Path, text: str, where: str
) -> None:
    """A line break in the sender, Reply-To, a title or the base URL would start a header of
    its own in every message: the file is refused when it loads, naming the value."""
    with pytest.raises(ConfigError, match=f"{where}.*one line"):
        settings(text + MINIMAL if text.startswith("base_url") else MINIMAL + text, tmp_path)


def test_a_base_url_from_the_environment_must_be_one_line(tmp_path: Path) -> None:
    env = {"DIGEST_BASE_URL": "https://news.example.org\r\nBcc: x@evil.example"}
    with pytest.raises(ConfigError, match="base_url: must be one line"):
        settings(MINIMAL, tmp_path, env)
