"""The command-line contract: JSON shapes on stdout, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.store import Store

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seeds" / "000_545cff0c2edb726a.txt"

runner = CliRunner()


@pytest.fixture
def seed() -> Path:
    if not SEED.is_file():
        pytest.skip(f"the seed article is absent: {SEED}")
    return SEED


def test_extract_seed_prints_only_json_on_stdout(seed: Path) -> None:
    # A real process, so nothing but the JSON can reach stdout.
    done = subprocess.run(
        [sys.executable, "-m", "digest", "extract", str(seed), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    article = json.loads(done.stdout)
    assert article["title"] == "Rutte: NATO will do what’s necessary to ensure Ukraine’s victory"
    assert article["published"].startswith("2024-10-15")
    assert "Wiesbaden" in article["text"]
    for boilerplate in (
        "officials expect nato's new chief",
        "Related:",
        "Become a Patron",
        "cup of coffee",
    ):
        assert boilerplate not in article["text"]
    assert set(article) >= {
        "title",
        "url",
        "canonical_url",
        "published",
        "author",
        "language",
        "text",
        "html",
        "image",
        "source",
    }


def test_extract_feed_prints_feed_and_articles(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        """<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
        <link>https://example.org/</link>
        <item><title>One</title><link>https://example.org/1?utm_source=x</link>
        <pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate><description>First.</description></item>
        <item><title>Two</title><link>https://example.org/2</link></item>
        </channel></rss>""",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["extract", str(feed), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["feed"]["title"] == "T"
    assert [a["title"] for a in data["articles"]] == ["One", "Two"]
    assert data["articles"][0]["canonical_url"] == "https://example.org/1"


def test_extract_feed_drops_a_paragraph_every_item_repeats(tmp_path: Path) -> None:
    plug = "Get our weekly newsletter: sign up today and never miss a story from the valley."
    stories = (
        "The valley council approved a new cycle path between the two villages on Monday.",
        "Heavy rain closed the mountain pass for the second time this month, police said.",
        "The cheese cooperative reported record sales at the autumn fair in the old market.",
    )
    items = "".join(
        f"<item><title>Item {n}</title><link>https://example.org/{n}</link>"
        f"<description><![CDATA[<p>{story}</p><p>{plug}</p>]]></description></item>"
        for n, story in enumerate(stories)
    )
    feed = tmp_path / "feed.xml"
    feed.write_text(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["extract", str(feed), "--json"])
    assert result.exit_code == 0, result.stderr
    articles = json.loads(result.stdout)["articles"]
    assert [a["text"] for a in articles] == list(stories)
    assert all("newsletter" not in a["html"] for a in articles)


def test_extract_of_a_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["extract", str(tmp_path / "nope.html"), "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.html" in lines[0]


def test_bad_usage_exits_2() -> None:
    assert runner.invoke(app, ["send"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_config_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(
        'version = 1\n[[digests]]\nname = "weekly"\ntitle = "W"\ntimezone = "Mars/Olympus"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["--config", str(config), "build"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert str(config) in message and "digests[0: weekly].timezone" in message
    assert "Mars/Olympus" in message and len(message.splitlines()) == 1


def test_missing_config_points_at_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "digest.toml: no such file" in result.stderr


def test_group_reads_jsonl_and_prints_topics(tmp_path: Path) -> None:
    lines = []
    for i in range(6):
        lines.append(
            {
                "id": f"f{i}",
                "title": f"Football cup final match {i}",
                "text": "The football club won the cup final match in extra time.",
            }
        )
        lines.append(
            {
                "id": f"b{i}",
                "title": f"Central bank interest rates {i}",
                "text": "The central bank raised interest rates to curb inflation.",
            }
        )
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    result = runner.invoke(app, ["group", str(source), "--json"])
    assert result.exit_code == 0, result.stderr
    topics = json.loads(result.stdout)["topics"]
    groups = sorted(sorted(topic["article_ids"]) for topic in topics)
    assert groups == [[f"b{i}" for i in range(6)], [f"f{i}" for i in range(6)]]
    assert all(" · " in topic["label"] for topic in topics)


def test_group_reports_the_bad_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "title": "A", "text": "x"}\n{not json\n', encoding="utf-8")
    result = runner.invoke(app, ["group", str(source), "--json"])
    assert result.exit_code == 1
    assert "in.jsonl" in result.stderr and "line 2" in result.stderr


def test_step_by_step_commands_work_on_the_demo_folder(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(folder), "--json"]).exit_code == 0
    config = ["--config", str(folder / "digest.toml")]

    fetched = runner.invoke(app, [*config, "fetch", "--json"])
    assert fetched.exit_code == 0, fetched.stderr
    assert json.loads(fetched.stdout)["stored"] == 0  # everything is known already

    health = json.loads(runner.invoke(app, [*config, "sources", "--json"]).stdout)["sources"]
    assert len(health) == 5 and all(s["failures"] == 0 and s["last_success"] for s in health)

    built = runner.invoke(app, [*config, "build", "--json"])
    assert built.exit_code == 0, built.stderr
    issue = json.loads(built.stdout)
    assert issue["issue_id"] == 1 and issue["created"] is False
    assert {"label", "article_ids"} <= set(issue["sections"][0])

    out = tmp_path / "preview"
    previewed = runner.invoke(app, [*config, "preview", "1", "--out", str(out), "--json"])
    assert previewed.exit_code == 0, previewed.stderr
    files = json.loads(previewed.stdout)
    assert Path(files["html"]).read_text().count("<html") == 1
    web = Path(files["web"]).read_text()
    assert "You are reading the web version" in web and "%%digest-" not in web
    for notice in ("confirm", "welcome", "preferences-changed"):
        shown = runner.invoke(app, [*config, "preview", "--notice", notice, "--out", str(out)])
        assert shown.exit_code == 0, shown.stderr
        assert (out / f"{notice}.eml").read_bytes().startswith(b"From: ")
    confirm = (out / "confirm.txt").read_text()
    assert "The link works for 48 hours." in confirm and "%%digest-" not in confirm
    unknown = runner.invoke(app, [*config, "preview", "--notice", "goodbye"])
    assert unknown.exit_code != 0 and "unknown notice 'goodbye'" in unknown.stderr

    sent = runner.invoke(app, [*config, "send", "1", "--json"])
    assert sent.exit_code == 0, sent.stderr
    assert json.loads(sent.stdout) == {
        "issue_id": 1,
        "sent": 20,
        "failed": 0,
        "unknown": 0,
        "queued": 0,
        "paused": "",
    }
    status = json.loads(runner.invoke(app, [*config, "status", "1", "--json"]).stdout)
    assert status["status"] == "sent" and status["sent"] == 20

    listed = json.loads(runner.invoke(app, [*config, "subscribers", "list", "--json"]).stdout)
    assert len(listed["subscribers"]) == 20

    added = runner.invoke(
        app, [*config, "subscribers", "add", "New.Reader@Example.org", "--topics", "Sport"]
    )
    assert added.exit_code == 0, added.stderr
    unknown = runner.invoke(
        app, [*config, "subscribers", "add", "x@example.org", "--topics", "Knitting"]
    )
    assert unknown.exit_code == 1 and "Knitting" in unknown.stderr

    bad_csv = tmp_path / "more.csv"
    bad_csv.write_text("email,topics\ngood@example.org,Sport\nnot-an-email,\n", encoding="utf-8")
    imported = runner.invoke(
        app, [*config, "subscribers", "import", str(bad_csv), "--consent", "fair", "--json"]
    )
    assert imported.exit_code == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["imported"] == 1 and [r["line"] for r in report["rejected"]] == [3]


def test_subscribers_add_takes_a_frequency_and_refuses_unknown_ones(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(
        'version = 1\n[[digests]]\nname = "daily"\ntitle = "D"\nlist = "news"\n'
        'window = "1d"\ncadence = "daily"\n',
        encoding="utf-8",
    )
    base = ["--config", str(config), "subscribers", "add", "--list", "news"]
    bad = runner.invoke(app, [*base, "a@example.org", "--frequency", "hourly"])
    assert bad.exit_code == 1 and "unknown frequency 'hourly'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    good = runner.invoke(app, [*base, "a@example.org", "--frequency", "daily"])
    assert good.exit_code == 0, good.stderr
    weekly = runner.invoke(app, [*base, "b@example.org"])
    assert weekly.exit_code == 0, weekly.stderr
    from subscribers.service import audience

    store = Store.open(f"sqlite:///{tmp_path / 'digest.db'}")
    with store.transaction() as connection:
        daily = [p.email for p in audience(connection, "news", cadence="daily")]
    store.engine.dispose()
    assert daily == ["a@example.org"]


# --- subscribers ------------------------------------------------------------------------------

NEWS_CONFIG = """version = 1
[mail]
url = "file://{outbox}"
sender = "News <news@example.org>"
[[digests]]
name = "daily"
title = "Daily News"
list = "news"
window = "1d"
cadence = "daily"
[[digests.topics]]
name = "Tech"
keywords = ["software"]
[[digests.topics]]
name = "Climate"
keywords = ["climate"]
"""


@pytest.fixture
def news(tmp_path: Path) -> list[str]:
    """`--config` for a digest.toml sending to the list `news`, mailing into tmp_path/outbox."""
    config = tmp_path / "digest.toml"
    config.write_text(NEWS_CONFIG.format(outbox=tmp_path / "outbox"), encoding="utf-8")
    return ["--config", str(config)]


def write_csv(tmp_path: Path, text: str, name: str = "people.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def subscriber_rows(config: list[str]) -> dict[str, dict[str, object]]:
    listed = runner.invoke(app, [*config, "subscribers", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    return {row["email"]: row for row in json.loads(listed.stdout)["subscribers"]}


def test_subscribers_import_reports_each_rejected_row_as_json(
    tmp_path: Path, news: list[str]
) -> None:
    csv_file = write_csv(
        tmp_path,
        "E-Mail,Full name,Interests,Frequency\r\n"
        "ann@example.org,Ann,tech,daily\r\n"
        "not-an-email,Nobody,,\r\n"
        '"bob@example.org","Bob\r\nBcc: evil@example.org",,\r\n'
        "ANN@example.org,Ann again,,\r\n"
        "cy@example.org,Cy,Knitting,\r\n"
        "di@example.org,Di,,hourly\r\n"
        "ed@example.org,,,\r\n",
    )

    done = runner.invoke(
        app, [*news, "subscribers", "import", csv_file, "--consent", "signup sheet", "--json"]
    )

    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"imported", "duplicates", "rejected"} <= set(report)
    assert (report["imported"], report["duplicates"]) == (2, 1)
    reasons = {entry["line"]: entry["reason"] for entry in report["rejected"]}
    assert sorted(reasons) == [3, 4, 6, 7, 8]
    assert reasons[3].startswith("bad address: 'not-an-email'")
    assert reasons[4] == "line break: CR/LF in column 'Full name'"
    assert reasons[6] == "duplicate: of line 2 (ann@example.org)"
    assert reasons[7].startswith("unknown topic: 'Knitting' (known: Climate, Tech)")
    assert reasons[8].startswith("unknown cadence: 'hourly'")
    rows = subscriber_rows(news)
    assert set(rows) == {"ann@example.org", "ed@example.org"}
    assert (rows["ann@example.org"]["topics"], rows["ann@example.org"]["status"]) == (
        ["Tech"],
        "active",
    )


def test_subscribers_import_maps_columns_named_on_the_command_line(
    tmp_path: Path, news: list[str]
) -> None:
    csv_file = write_csv(tmp_path, "Mail 1,Who,Likes\nann@example.org,Ann,Climate\n")
    refused = runner.invoke(
        app, [*news, "subscribers", "import", csv_file, "--consent", "x", "--column", "email=Mail"]
    )
    assert refused.exit_code == 1
    assert "--column email=Mail: no such column (found: 'Mail 1', 'Who', 'Likes')" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    options = ["--column", "email=mail 1", "--column", "name=Who", "--column", "topics=Likes"]

    done = runner.invoke(
        app, [*news, "subscribers", "import", csv_file, "--consent", "x", *options, "--json"]
    )

    assert done.exit_code == 0, done.stderr
    row = subscriber_rows(news)["ann@example.org"]
    assert (row["name"], row["topics"]) == ("Ann", ["Climate"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--consent NOTE (subscribed now) or --double-opt-in"),
        (["--consent", "x", "--double-opt-in"], "exclude each other"),
        (["--consent", "  "], "--consent needs a note"),
    ],
)
def test_subscribers_import_refuses_without_a_consent_choice_in_one_line(
    tmp_path: Path, news: list[str], flags: list[str], message: str
) -> None:
    csv_file = write_csv(tmp_path, "email\nann@example.org\n")

    done = runner.invoke(app, [*news, "subscribers", "import", csv_file, *flags])

    assert done.exit_code == 2
    assert message in done.stderr and "people.csv" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "digest.db").exists()


def test_subscribers_import_with_double_opt_in_mails_each_new_person_a_confirmation(
    tmp_path: Path, news: list[str]
) -> None:
    added = runner.invoke(
        app, [*news, "subscribers", "add", "old@example.org", "--consent", "signed up at a fair"]
    )
    assert added.exit_code == 0, added.stderr
    csv_file = write_csv(tmp_path, "email,name\nnew@example.org,New\nold@example.org,\n")
    command = [*news, "subscribers", "import", csv_file, "--double-opt-in", "--json"]

    without_key = runner.invoke(app, command, env={"DIGEST_SECRET_KEY": ""})
    assert without_key.exit_code == 1 and "DIGEST_SECRET_KEY" in without_key.stderr
    done = runner.invoke(app, command, env={"DIGEST_SECRET_KEY": "k" * 32})

    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["imported"], report["pending"], report["confirmations_sent"]) == (2, 1, 1)
    rows = subscriber_rows(news)
    assert (rows["new@example.org"]["status"], rows["old@example.org"]["status"]) == (
        "pending",
        "active",
    )
    [mail] = [path.read_text() for path in (tmp_path / "outbox").rglob("*.eml")]
    assert "To: new@example.org" in mail and "/confirm/" in mail


def test_an_erased_person_is_not_brought_back_by_a_later_import(
    tmp_path: Path, news: list[str]
) -> None:
    csv_file = write_csv(tmp_path, "email,name\nann@example.org,Ann\nbob@example.org,Bob\n")
    first = runner.invoke(app, [*news, "subscribers", "import", csv_file, "--consent", "fair"])
    assert first.exit_code == 0, first.stderr
    assert "2 imported (2 new to the list)" in first.stderr

    shown = runner.invoke(app, [*news, "subscribers", "export-person", "ANN@example.org"])
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["person"]["name"] == "Ann"
    assert [(s["list"], s["status"]) for s in data["subscriptions"]] == [("news", "active")]
    assert [event["action"] for event in data["consent_log"]] == ["imported"]

    forgotten = runner.invoke(app, [*news, "subscribers", "forget", "ann@example.org", "--json"])
    assert forgotten.exit_code == 0, forgotten.stderr
    assert json.loads(forgotten.stdout)["forgotten"] is True
    again = runner.invoke(app, [*news, "subscribers", "forget", "ann@example.org"])
    assert again.exit_code == 1 and "ann@example.org: no such subscriber" in again.stderr

    reimported = runner.invoke(
        app, [*news, "subscribers", "import", csv_file, "--consent", "fair", "--json"]
    )
    assert reimported.exit_code == 0, reimported.stderr
    report = json.loads(reimported.stdout)
    assert (report["imported"], report["suppressed"], report["rejected"]) == (1, 1, [])
    assert set(subscriber_rows(news)) == {"bob@example.org"}
    erased = json.loads(
        runner.invoke(app, [*news, "subscribers", "export-person", "ann@example.org"]).stdout
    )
    assert erased["person"] is None and erased["suppression"]["reason"] == "erased"
    unknown = runner.invoke(app, [*news, "subscribers", "export-person", "zed@example.org"])
    assert unknown.exit_code == 1 and len(unknown.stderr.strip().splitlines()) == 1


def test_subscribers_export_neutralises_formulas_and_imports_back_unchanged(
    tmp_path: Path, news: list[str]
) -> None:
    hostile = write_csv(
        tmp_path,
        'email,name,topics\n-ann@example.org,"=HYPERLINK(""http://x.example"",""click"")",Tech\n'
        "bob@example.org,@SUM(A1),\n"
        "cy@example.org,+1 Cy,Climate;Tech\n",
    )
    imported = runner.invoke(app, [*news, "subscribers", "import", hostile, "--consent", "x"])
    assert imported.exit_code == 0, imported.stderr
    out = tmp_path / "export.csv"

    done = runner.invoke(app, [*news, "subscribers", "export", "--out", str(out)])

    assert done.exit_code == 0, done.stderr
    assert "Wrote 3 rows" in done.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == [
        "email,name,list,topics,cadence,status",
        '\'-ann@example.org,"\'=HYPERLINK(""http://x.example"",""click"")",news,Tech,weekly,active',
        "bob@example.org,'@SUM(A1),news,,weekly,active",
        "cy@example.org,'+1 Cy,news,Climate;Tech,weekly,active",
    ]
    stdout = runner.invoke(app, [*news, "subscribers", "export", "--list", "news"])
    assert stdout.exit_code == 0 and stdout.stdout.splitlines() == lines
    before = subscriber_rows(news)
    other = tmp_path / "other"
    other.mkdir()
    copy = ["--config", str(other / "digest.toml")]
    (other / "digest.toml").write_text(NEWS_CONFIG.format(outbox=other / "outbox"))
    again = runner.invoke(app, [*copy, "subscribers", "import", str(out), "--consent", "moved"])
    assert again.exit_code == 0, again.stderr
    assert subscriber_rows(copy) == before
