"""SMTP sending speed: `python bench/bench_smtp.py [--messages N] [--connections C]`.

One sending process delivers a 30-article issue (a few topic variants, each reader's message
personalised as MessageFactory does) through SmtpBackend to an aiosmtpd server on 127.0.0.1
running in another process, which counts and discards what it accepts. Measured in one run:
- the fast path (variant encoded once, per-reader values filled in): messages/s and the
  sending process's peak RSS;
- the same backend with every message built by the email package, as the reference;
- DKIM signing (rsa-sha256, 2048-bit) on top of the fast path, separately;
- how many messages the server counted, so nothing is counted that did not arrive.

The server speaks SMTP with aiosmtpd; its DATA reader takes the message in large reads
rather than one line at a time (--stock-server keeps aiosmtpd's own line reader, which on
one core becomes the limit long before the client does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.assemble import issue_for_topics  # noqa: E402
from digest.deliver.message import (  # noqa: E402
    list_id,
    message_id,
    unsubscribe_headers,
    unsubscribe_mailto,
)
from digest.deliver.smtp import DkimSigner, SmtpBackend  # noqa: E402
from digest.models import OutgoingMessage, SharedBody  # noqa: E402
from digest.render import RenderContext, RenderedIssue, personalise, render_issue  # noqa: E402
from digest.render.environment import template_environment  # noqa: E402
from digest.render.markers import PERSONAL_FIELDS  # noqa: E402
from subscribers.tokens import make_unsubscribe_token  # noqa: E402
from tests.render.sample_issue import LABELS, sample_issue  # noqa: E402

CONTEXT = RenderContext(publication="Bench Digest", base_url="https://news.example.org")
SENDER = "Bench Digest <digest@news.example.org>"
DOMAIN = "news.example.org"
SECRET = "bench-secret-key-bench-secret-key"
DATE = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
BATCH = 100  # what deliver_issue hands the backend at a time
# Topic choices of the readers: everything, and a few single topics.
VARIANTS: tuple[tuple[str, ...], ...] = ((), (LABELS[0],), (LABELS[2],), (LABELS[3], LABELS[4]))


# --- the server (another process) -------------------------------------------------------


def serve(port_file: Path, stock: bool) -> None:
    """aiosmtpd on 127.0.0.1 counting accepted messages; prints the count per stdin line."""
    from aiosmtpd.smtp import SMTP

    accepted = [0, 0]  # messages, bytes

    class Counter:
        async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:
            accepted[0] += 1
            accepted[1] += len(envelope.original_content or b"")  # type: ignore[attr-defined]
            return "250 OK"

    class BulkDataSMTP(SMTP):
        """DATA read in large pieces: the client waits for our reply, so the message's end
        is the end of what arrived."""

        async def smtp_DATA(self, arg: str) -> None:
            if self.envelope is None or not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            received = bytearray()
            while not received.endswith(b"\r\n.\r\n"):
                piece = await self._reader.read(1 << 20)
                if not piece:
                    return
                received += piece
            accepted[0] += 1
            accepted[1] += len(received)
            self._set_post_data_state()
            await self.push("250 OK")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        factory = (lambda: SMTP(Counter())) if stock else (lambda: BulkDataSMTP(Counter()))
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            print(f"{accepted[0]} {accepted[1]}", flush=True)

    asyncio.run(main())


class Server:
    """The counting server in a child process."""

    def __init__(self, stock: bool) -> None:
        folder = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
        port_file = folder / "port"
        command = [sys.executable, __file__, "--serve", str(port_file)]
        if stock:
            command.append("--stock-server")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                sys.exit("bench_smtp: the server did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def accepted(self) -> tuple[int, int]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        messages, size = self.process.stdout.readline().split()
        return int(messages), int(size)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- the sending side -------------------------------------------------------------------


def rendered_variants() -> list[RenderedIssue]:
    env = template_environment(None)
    issue = sample_issue(30)
    return [
        render_issue(issue_for_topics(issue, topics), template="digest", env=env, context=CONTEXT)
        for topics in VARIANTS
    ]


def reader_message(rendered: RenderedIssue, reader: int) -> OutgoingMessage:
    """One reader's message, built as MessageFactory builds it."""
    email = f"reader{reader}@example.com"
    token = make_unsubscribe_token(SECRET, reader, "bench")
    values = {
        "unsubscribe_url": f"https://news.example.org/unsubscribe/{token}",
        "preferences_url": f"https://news.example.org/preferences/{token}",
        "email": email,
        "name": "",
    }
    html, text = personalise(rendered, values)
    headers = {
        "Message-ID": message_id(DOMAIN, 7, reader),
        "List-Id": list_id("Bench Digest", "bench", DOMAIN),
        **unsubscribe_headers(values["unsubscribe_url"], unsubscribe_mailto(SENDER, token)),
    }
    return OutgoingMessage(
        delivery_id=str(reader),
        to=email,
        sender=SENDER,
        subject=rendered.subject,
        html=html,
        text=text,
        headers=headers,
        shared=SharedBody(rendered.nonce, rendered.html, rendered.text),
        personal={field: values[field] for field in PERSONAL_FIELDS if field in values},
    )


def batches(
    variants: list[RenderedIssue], count: int, first: int
) -> Iterator[list[OutgoingMessage]]:
    for start in range(first, first + count, BATCH):
        stop = min(start + BATCH, first + count)
        yield [reader_message(variants[n % len(variants)], n) for n in range(start, stop)]


class SlowPath:
    """Stands in for FastEncoder: every message goes through the email package."""

    def encode(self, _message: OutgoingMessage, *, date: datetime) -> None:
        return None


async def send_all(
    backend: SmtpBackend, variants: list[RenderedIssue], count: int, first: int
) -> float:
    """Seconds to send `count` messages in deliver_issue-sized batches; all must be sent."""
    started = time.perf_counter()
    for batch in batches(variants, count, first):
        results = await backend.send(batch, date=DATE)
        failed = [r for r in results if r.state != "sent"]
        if failed:
            sys.exit(f"bench_smtp: {len(failed)} not sent, e.g. {failed[0]}")
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dkim_signer() -> DkimSigner:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return DkimSigner("bench", pem)


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP backend speed against a local server.")
    parser.add_argument("--messages", type=int, default=100_000, help="fast-path messages")
    parser.add_argument("--reference", type=int, default=1_000, help="slow-path messages")
    parser.add_argument("--dkim", type=int, default=2_000, help="DKIM-signed messages")
    parser.add_argument("--connections", type=int, default=8, help="SMTP connections")
    parser.add_argument("--stock-server", action="store_true", help="aiosmtpd's line reader")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.stock_server)
        return

    variants = rendered_variants()
    server = Server(args.stock_server)
    try:

        def backend(**options: object) -> SmtpBackend:
            return SmtpBackend(
                host="127.0.0.1",
                port=server.port,
                connections=args.connections,
                dkim=options.get("dkim"),  # type: ignore[arg-type]
            )

        slow = backend()
        slow.encoder = SlowPath()  # type: ignore[assignment]
        fast, signed = backend(), backend(dkim=dkim_signer())
        asyncio.run(send_all(fast, variants, 200, 0))  # warm-up: encodes each variant once
        reference_s = asyncio.run(send_all(slow, variants, args.reference, 0))
        rss_before = peak_rss_mb()
        cpu_before = os.times()
        fast_s = asyncio.run(send_all(fast, variants, args.messages, 0))
        cpu_after = os.times()
        rss_fast = peak_rss_mb()
        dkim_s = asyncio.run(send_all(signed, variants, args.dkim, 0))
        accepted, size = server.accepted()
    finally:
        server.stop()

    expected = 200 + args.reference + args.messages + args.dkim
    if accepted != expected:
        sys.exit(f"bench_smtp: the server counted {accepted} messages, expected {expected}")
    reference_rate = args.reference / reference_s
    fast_rate = args.messages / fast_s
    dkim_rate = args.dkim / dkim_s
    print(
        f"variants: {len(variants)}; connections: {args.connections}; "
        f"mean message {size / accepted / 1000:.1f} KB; server counted {accepted:,}"
    )
    print("| path | messages | msg/s | vs email package |")
    print("| --- | ---: | ---: | ---: |")
    reference_row = f"| email package per message (reference) | {args.reference:,} |"
    print(f"{reference_row} {reference_rate:,.0f} | 1.0x |")
    print(
        f"| variant encoded once (fast path) | {args.messages:,} | {fast_rate:,.0f} | "
        f"{fast_rate / reference_rate:.1f}x |"
    )
    print(
        f"| fast path + DKIM rsa-sha256 2048 | {args.dkim:,} | {dkim_rate:,.0f} | "
        f"{dkim_rate / reference_rate:.1f}x |"
    )
    sender_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    print(
        f"sending process CPU on the fast path: {sender_cpu / args.messages * 1e3:.3f} ms per "
        f"message (building + encoding + SMTP), i.e. {args.messages / sender_cpu:,.0f} msg per "
        "CPU-second; the server process shares the machine's 2 cores"
    )
    print(f"DKIM signing cost: {(1 / dkim_rate - 1 / fast_rate) * 1e3:.2f} ms per message")
    print(
        f"sending process peak RSS: {rss_before:.0f} MB before the fast run, "
        f"{rss_fast:.0f} MB after {args.messages:,} messages (pid {os.getpid()})"
    )


if __name__ == "__main__":
    main()
