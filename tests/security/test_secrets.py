"""Secrets stay secret: the token key, the editor's password, the SendGrid key, the SMTP
password and the DKIM private key appear in no log record, no command output and no page,
including when things fail.

Each flow runs for real with every secret set: the command line sending through a SendGrid that
refuses and one that fails, through SMTP (DKIM-signing) to a server that refuses a reader,
and with a broken digest.toml; the web app logging in wrongly and rightly, refusing forms and
tokens, and failing with a 500. Everything captured is searched for each secret.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from digest.cli import app as cli_app
from digest.config import load_settings
from digest.store import Store
from digest.web.serving import public_app
from subscribers import service
from tests.conftest import SmtpServer
from tests.fake_sendgrid import FakeSendGrid
from tests.web.public_site import Clock, csrf_token

SENDGRID_KEY = "SG." + secrets.token_urlsafe(24)
PASSWORD = "editor-" + secrets.token_urlsafe(18)
SECRET_KEY = "key-" + secrets.token_urlsafe(24)
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(18)
DKIM_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=1024)
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode("ascii")
)
# Lines of the key's body: any one of them in an output is part of the key leaking.
DKIM_LINES = [line for line in DKIM_PEM.splitlines() if "-----" not in line]
CONFIG = """
version = 1
name = "Example News"
base_url = "https://news.example.org"

[mail]
url = "file://outbox"
sender = "Example News <news@example.org>"

[[sources]]
name = "wire"
url = "feed.json"

[[digests]]
name = "weekly"
title = "The Weekly"
"""


def leaks(text: str) -> list[str]:
    """The secrets (by name) found in `text`."""
    named = {
        "DIGEST_SECRET_KEY": SECRET_KEY,
        "DIGEST_EDITOR_PASSWORD": PASSWORD,
        "SENDGRID_API_KEY": SENDGRID_KEY,
        "SMTP password": SMTP_PASSWORD,
    }
    found = [name for name, value in named.items() if value in text]
    if any(line in text for line in DKIM_LINES):
        found.append("DKIM private key")
    return found


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A digest folder: the config, a feed, a list with two readers, the DKIM key file."""
    (tmp_path / "feed.json").write_text(json.dumps(feed()), encoding="utf-8")
    (tmp_path / "digest.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "dkim.pem").write_text(DKIM_PEM, encoding="ascii")
    settings = load_settings(tmp_path / "digest.toml", {})
    store = Store.open(settings.database_url)
    with store.transaction() as connection:
        service.ensure_list(connection, "weekly", now=datetime.now(UTC))
        for address in ("ann@example.org", "reject-bob@example.org"):
            service.add_subscriber(
                connection, address, list_name="weekly", consent="fair", now=datetime.now(UTC)
            )
    store.engine.dispose()
    yield tmp_path


def environment(root: Path, mail_url: str) -> dict[str, str]:
    return {
        "DIGEST_CONFIG": str(root / "digest.toml"),
        "DIGEST_SECRET_KEY": SECRET_KEY,
        "DIGEST_EDITOR_PASSWORD": PASSWORD,
        "SENDGRID_API_KEY": SENDGRID_KEY,
        "DIGEST_MAIL_URL": mail_url,
        "DIGEST_DKIM_KEY_FILE": str(root / "dkim.pem"),
        "DIGEST_DKIM_SELECTOR": "mail2025",
    }


def run(env: dict[str, str], *args: str, verbose: bool = True) -> tuple[int, str]:
    """`digest [--verbose] ARGS` in this process; (exit code, stderr then stdout)."""
    result = CliRunner().invoke(cli_app, ["--verbose"] * verbose + list(args), env=env)
    return result.exit_code, result.stderr + result.stdout


def built_issue(env: dict[str, str]) -> int:
    code, output = run(env, "fetch")
    assert code == 0, output
    result = CliRunner().invoke(cli_app, ["build", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["issue_id"])


def feed() -> dict[str, object]:
    """Four stories of the last hours (the command line builds with the wall clock)."""
    now = datetime.now(UTC)
    items = [
        {
            "id": f"item-{n}",
            "url": f"https://example.org/story-{n}",
            "title": f"Story {n} about the harbour",
            "content_text": f"Words about story {n}. " * 20,
            "date_published": (now - timedelta(hours=n + 1)).isoformat(),
        }
        for n in range(4)
    ]
    return {"version": "https://jsonfeed.org/version/1.1", "title": "Wire", "items": items}


def test_failed_sendgrid_sends_print_and_log_no_secret(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: read the API key (or the token key) from what an operator pastes into a bug
    report after a failed send: the command's output and the log, with SendGrid answering
    401 for a wrong key, then 429 until later, then accepting."""
    caplog.set_level(logging.DEBUG)
    with FakeSendGrid("SG.the-key-sendgrid-expects") as refusing:
        env = environment(root, refusing.mail_url)
        issue = built_issue(env)
        code, refused = run(env, "send", str(issue))
        assert code == 1 and "error:" in refused
    with FakeSendGrid(SENDGRID_KEY) as failing:
        env = environment(root, failing.mail_url)
        failing.fail_next("429", retry_after=3600)  # come back in an hour: the send stops
        code, failed = run(env, "send", str(issue))
        assert code == 1 and "still queued" in failed
        result = CliRunner().invoke(cli_app, ["send", str(issue), "--json"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["sent"] == 2
        sent = result.output
    captured = "\n".join([refused, failed, sent, caplog.text])
    # --verbose: the log goes to stderr with the command's own lines, both searched here.
    assert "INFO" in failed and "WARNING" in failed
    assert leaks(captured) == []


def test_a_dkim_signed_smtp_send_with_a_refusal_prints_and_logs_no_secret(
    root: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: the same for SMTP with DKIM signing: the server refuses one reader (550), and
    the failure is reported; neither the DKIM private key nor a password shows."""
    caplog.set_level(logging.DEBUG)
    env = environment(root, f"smtp://{smtp_server.host}:{smtp_server.port}")
    issue = built_issue(env)
    code, output = run(env, "send", str(issue))
    assert code == 0, output
    assert "1 sent, 1 failed" in output
    [received] = smtp_server.sink.received
    assert b"DKIM-Signature:" in received.data
    assert leaks(output + caplog.text) == []


@pytest.mark.parametrize(
    ("config", "mail_url"),
    [
        ("version = 1\nname = [unclosed", "file://outbox"),
        ('version = 1\nname = "x"\nsecret_key = "inline"\n', "file://outbox"),
        (CONFIG, f"smtp://digest:{SMTP_PASSWORD}@127.0.0.1:notaport"),
        (CONFIG, f"sendgrid://{SENDGRID_KEY}@127.0.0.1:1?tls=maybe"),
    ],
    ids=["not TOML", "a secret in the file", "SMTP URL with a bad port", "SendGrid URL"],
)
def test_a_bad_configuration_is_one_line_without_a_secret(
    root: Path, config: str, mail_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: the error for a broken digest.toml or mail URL echoes the environment or the
    URL's credentials. Each is one line naming the problem, and no secret."""
    (root / "digest.toml").write_text(config, encoding="utf-8")
    code, output = run(environment(root, mail_url), "send", "1", verbose=False)
    assert code == 1, output
    assert output.startswith("error:") and output.count("\n") == 1, output
    assert leaks(output + caplog.text) == []


def test_web_failures_and_logins_show_and_log_no_secret(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: fish a secret out of the web app's answers or its log: a wrong password, a
    right one, a forged form, a bad token, a missing page, and an internal error (the
    database losing a table) answered 500."""
    caplog.set_level(logging.DEBUG)
    env = environment(root, "file://outbox")
    settings = load_settings(root / "digest.toml", env)
    store = Store.open(settings.database_url)
    app = public_app(settings, store, clock=Clock(datetime.now(UTC)), environ=env)
    answers = []
    with TestClient(
        app, base_url="https://testserver", follow_redirects=False, raise_server_exceptions=False
    ) as client:
        page = client.get("/editor/login")
        token = csrf_token(page.text)
        for password in (PASSWORD[:-1], PASSWORD):
            answer = client.post("/editor/login", data={"csrf_token": token, "password": password})
            answers.append(answer)
            token = csrf_token(client.get("/editor/login").text)
        assert [a.status_code for a in answers] == [401, 303]
        answers.append(client.get("/editor/"))
        answers.append(client.post("/subscribe/weekly", data={"email": "a@example.org"}))
        answers.append(client.get("/u/1.weekly.forged"))
        answers.append(client.get("/p/1.weekly.YQ.forged"))
        answers.append(client.get("/issues/999"))
        with store.transaction() as connection:
            connection.execute(sa.text("DROP TABLE editor_sessions"))
        broken = client.get("/editor/")
        assert broken.status_code == 500
        answers.append(broken)
    store.engine.dispose()
    shown = "\n".join(f"{a.status_code} {dict(a.headers)}\n{a.text}" for a in answers)
    assert [a.status_code for a in answers[2:]] == [200, 403, 400, 400, 404, 500]
    assert "Traceback" not in shown
    assert leaks(shown) == []
    assert leaks(caplog.text) == []
    assert leaks(PASSWORD[:-1]) == []  # (the near miss is not the password itself)
    assert PASSWORD[:-1] not in caplog.text  # nor is an attempt logged


def test_the_settings_never_show_their_secrets(root: Path) -> None:
    """Attack: a log line or an error that prints the settings object (repr, str, an
    f-string) hands out the token key and the passwords in the mail and database URLs."""
    env = {
        **environment(root, f"smtp://digest:{SMTP_PASSWORD}@127.0.0.1:587"),
        "DIGEST_DATABASE_URL": f"postgresql+psycopg://digest:{PASSWORD}@127.0.0.1/digest",
    }
    settings = load_settings(root / "digest.toml", env)
    assert settings.secret_key == SECRET_KEY and SMTP_PASSWORD in settings.mail_url
    assert leaks(f"{settings!r} {settings} {settings.file!r}") == []
