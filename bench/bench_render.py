"""Rendering engine and personalisation speed: `python bench/bench_render.py [--runs N]`.

Measures, in one run on this machine:
- compiling the 30-article digest MJML with MRML (`compile_mjml`) against the official npm
  mjml in a long-lived node process (the test oracle in tests/render/oracle), and that both
  HTML outputs match under tests/render/test_oracle.py's comparison;
- personalised messages per second on one core from one compiled 30-article issue: the
  split-once fill, one regex substitution per recipient as the in-run reference, and the fill
  plus the full MIME message bytes;
- the compiled HTML size.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.deliver.message import (  # noqa: E402
    list_id,
    message_id,
    to_email_message,
    unsubscribe_headers,
    unsubscribe_mailto,
)
from digest.models import OutgoingMessage  # noqa: E402
from digest.render import RenderContext, RenderedIssue, personalise, render_issue  # noqa: E402
from digest.render.environment import template_environment  # noqa: E402
from digest.render.issue import render_source  # noqa: E402
from digest.render.markers import escape_html, keep_text  # noqa: E402
from digest.render.mjml import compile_mjml  # noqa: E402
from subscribers.tokens import make_unsubscribe_token  # noqa: E402
from tests.render.sample_issue import sample_issue  # noqa: E402
from tests.render.test_oracle import (  # noqa: E402
    ORACLE_DIR,
    OfficialCompiler,
    launch_official_compiler,
    tokens,
)

CONTEXT = RenderContext(publication="Bench Digest", base_url="https://news.example.org")
SENDER = "Bench Digest <digest@news.example.org>"
SECRET = "bench-secret-key-bench-secret-key"
DATE = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
# node's JIT takes ~20 compiles to reach its steady speed; time only after that.
WARMUP_RUNS = 20
BLOCK = 10


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def start_official_compiler() -> subprocess.Popen[str]:
    """`node compile.js` in the oracle folder, installing its pinned mjml first if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        sys.exit("bench_render: node and npm are needed for the official MJML compiler")
    if not (ORACLE_DIR / "node_modules" / "mjml").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ORACLE_DIR, check=True)
    return launch_official_compiler(node)


def bench_compilers(mjml: str, runs: int) -> None:
    with start_official_compiler() as process:
        official = OfficialCompiler(process)
        first_ms = official.compile(mjml).ms
        for _ in range(WARMUP_RUNS):
            official.compile(mjml)
            compiled = compile_mjml(mjml, origin="digest.mjml.j2")
        node_ms, round_trip, ours = [], [], []
        # Blocks of BLOCK runs per engine, alternating: each runs with its own caches warm,
        # and both see the same stretches of machine noise.
        for block_start in range(0, runs, BLOCK):
            for _ in range(min(BLOCK, runs - block_start)):
                started = time.perf_counter()
                reference = official.compile(mjml)
                round_trip.append(time.perf_counter() - started)
                node_ms.append(reference.ms / 1e3)
            for _ in range(min(BLOCK, runs - block_start)):
                started = time.perf_counter()
                compiled = compile_mjml(mjml, origin="digest.mjml.j2")
                ours.append(time.perf_counter() - started)
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
    if reference.errors:
        sys.exit(f"bench_render: the official compiler reports {reference.errors[0]}")
    same = tokens(compiled.html) == tokens(reference.html)
    mrml, npm = median_ms(ours), median_ms(node_ms)
    mrml_best, npm_best = min(ours) * 1e3, min(node_ms) * 1e3
    print(f"| MJML source, 30 articles | {len(mjml.encode()) / 1000:.1f} KB |")
    print(f"| compile_mjml (mrml), median / best of {runs} | {mrml:.2f} / {mrml_best:.2f} ms |")
    print(f"| official mjml 4.18.0 inside node (reference) | {npm:.1f} / {npm_best:.1f} ms |")
    print(f"| official mjml, round trip from Python, median | {median_ms(round_trip):.1f} ms |")
    print(f"| official mjml, first compile in a fresh node | {first_ms:.1f} ms |")
    print(f"| mrml speed-up, medians / bests | {npm / mrml:.1f}x / {npm_best / mrml_best:.1f}x |")
    print(f"| output matches official (test_oracle tokens) | {'yes' if same else 'NO'} |")
    if not same:
        sys.exit("bench_render: mrml's HTML differs from the official compiler's")


def recipient_values(count: int) -> list[dict[str, str]]:
    """What MessageFactory.personal_values gives each subscriber, plus a name (some blank)."""
    values = []
    for subscriber_id in range(1, count + 1):
        token = make_unsubscribe_token(SECRET, subscriber_id, "weekly")
        values.append(
            {
                "unsubscribe_url": f"{CONTEXT.base_url}/u/{token}",
                "preferences_url": f"{CONTEXT.base_url}/u/{token}",
                "email": f"reader{subscriber_id}@example.org",
                "name": "" if subscriber_id % 3 == 0 else f"Reader {subscriber_id} & Co",
                "token": token,
            }
        )
    return values


def personalise_by_regex(rendered: RenderedIssue, values: Mapping[str, str]) -> tuple[str, str]:
    """The reference: one regex substitution over each part for every recipient."""
    pattern = re.compile(re.escape(f"%%digest-{rendered.nonce}:") + r"([a-z_]+)(?::[0-9a-f]+)?%%")

    def fill(text: str, escape: Callable[[str], str]) -> str:
        return pattern.sub(lambda match: escape(values[match.group(1)]), text)

    return fill(rendered.html, escape_html), fill(rendered.text, keep_text)


def message_bytes(rendered: RenderedIssue, values: Mapping[str, str], delivery: int) -> bytes:
    """personalise, then the message as MessageFactory and the file backend build it."""
    html, text = personalise(rendered, values)
    domain = "news.example.org"
    message = OutgoingMessage(
        delivery_id=str(delivery),
        to=values["email"],
        sender=SENDER,
        subject=rendered.subject,
        html=html,
        text=text,
        headers={
            "Message-ID": message_id(domain, 1, str(delivery)),
            "List-Id": list_id("Bench Digest", "weekly", domain),
            **unsubscribe_headers(
                values["unsubscribe_url"], unsubscribe_mailto(SENDER, values["token"])
            ),
        },
    )
    return to_email_message(message, date=DATE).as_bytes()


def messages_per_second(
    personal: Callable[[RenderedIssue, Mapping[str, str], int], object],
    rendered: RenderedIssue,
    recipients: list[dict[str, str]],
    runs: int,
) -> float:
    """Median over runs of recipients / seconds, one thread."""
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for delivery, values in enumerate(recipients):
            personal(rendered, values, delivery)
        rates.append(len(recipients) / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_personalise(rendered: RenderedIssue, recipients: int, runs: int) -> None:
    values = recipient_values(recipients)
    # Building MIME with the email package is ~1000x slower than filling: fewer per run.
    mime_values = values[: max(1, recipients // 100)]
    split_once = messages_per_second(
        lambda issue, vals, _n: personalise(issue, vals), rendered, values, runs
    )
    by_regex = messages_per_second(
        lambda issue, vals, _n: personalise_by_regex(issue, vals), rendered, values, runs
    )
    with_mime = messages_per_second(message_bytes, rendered, mime_values, runs)
    one = message_bytes(rendered, values[0], 0)
    print(f"| personalise (split once, one join per part) | {split_once:,.0f} msg/s |")
    print(f"| regex substitution per recipient (reference) | {by_regex:,.0f} msg/s |")
    print(f"| split-once speed-up over regex | {split_once / by_regex:.1f}x |")
    print(f"| personalise + MIME message bytes | {with_mime:,.0f} msg/s |")
    print(f"| one MIME message | {len(one) / 1000:.1f} KB |")


def main() -> None:
    parser = argparse.ArgumentParser(description="MJML engines and personalisation speed.")
    parser.add_argument("--runs", type=int, default=100, help="timed compiles per engine")
    parser.add_argument(
        "--recipients", type=int, default=20_000, help="recipients per personalise run"
    )
    parser.add_argument("--fill-runs", type=int, default=5, help="timed personalise runs")
    args = parser.parse_args()
    if min(args.runs, args.recipients, args.fill_runs) < 1:
        parser.error("--runs, --recipients and --fill-runs must be at least 1")

    env = template_environment(None)
    issue = sample_issue(30)
    source = render_source(issue, template="digest", env=env, context=CONTEXT)
    rendered = render_issue(issue, template="digest", env=env, context=CONTEXT)
    print("| measure | result |\n|---|---|")
    bench_compilers(source.mjml, args.runs)
    bench_personalise(rendered, args.recipients, args.fill_runs)
    print(
        f"| HTML size, 30 articles | {rendered.size_bytes / 1000:.1f} KB (Gmail clips at ~102 KB) |"
    )


if __name__ == "__main__":
    main()
