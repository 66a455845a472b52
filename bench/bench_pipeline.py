"""Pipeline timings and sizes: `python bench/bench_pipeline.py [--runs N]`.

Measures, in one run on this machine:
- `digest demo` wall time in a fresh folder (a subprocess, as a user runs it), against
  `python -c "import digest.cli"` (interpreter + import cost) as the in-run reference;
- rendering one 30-article variant (Jinja → MJML → HTML + text), and personalising it;
- the HTML size of that variant against Gmail's ~102 KB clipping limit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.render import RenderContext, personalise, render_issue  # noqa: E402
from digest.render.environment import template_environment  # noqa: E402
from tests.render.sample_issue import sample_issue  # noqa: E402


def wall(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    demo_times, import_times = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            import_times.append(wall([sys.executable, "-c", "import digest.cli"], Path(folder)))
            demo_times.append(
                wall([sys.executable, "-m", "digest", "demo", "d", "--json"], Path(folder))
            )

    env = template_environment(None)
    context = RenderContext(publication="Bench Digest", base_url="https://news.example.org")
    issue = sample_issue(30)
    render_times, personalise_times = [], []
    rendered = render_issue(issue, template="digest", env=env, context=context)
    values = {
        "unsubscribe_url": "https://news.example.org/u/123.weekly.AAAAAAAAAAAAAAAAAAAAAA",
        "preferences_url": "https://news.example.org/u/123.weekly.AAAAAAAAAAAAAAAAAAAAAA",
        "email": "reader@example.org",
    }
    for _ in range(runs * 20):
        started = time.perf_counter()
        rendered = render_issue(issue, template="digest", env=env, context=context)
        render_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        personalise(rendered, values)
        personalise_times.append(time.perf_counter() - started)

    demo, base = statistics.median(demo_times), statistics.median(import_times)
    print(f"| digest demo, fresh folder (median of {runs}) | {demo:.2f} s |")
    print(f"| python -c 'import digest.cli' (reference) | {base:.2f} s |")
    print(f"| demo / import ratio | {demo / base:.1f}x |")
    render_ms = statistics.median(render_times) * 1e3
    personalise_us = statistics.median(personalise_times) * 1e6
    size_kb = rendered.size_bytes / 1000
    print(f"| render_issue, 30 articles (median) | {render_ms:.1f} ms |")
    print(f"| personalise one recipient (median) | {personalise_us:.0f} µs |")
    print(f"| HTML size, 30 articles | {size_kb:.1f} KB (Gmail clips at ~102 KB) |")


if __name__ == "__main__":
    main()
