"""The installed package works outside the repository, and the architecture rules hold."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    """The pure core does no I/O; `subscribers` never imports `digest` (pyproject contracts)."""
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [lint], cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.slow
def test_wheel_runs_the_demo_from_outside_the_repository(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if built.returncode != 0 and "Could not find a version" in built.stderr:
        pytest.skip("the build backend (hatchling) cannot be downloaded here")
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("digest-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "digest/_templates/digest.mjml.j2",
        "digest/_templates/digest.txt.j2",
        "digest/_templates/web/unsubscribe.html",
        "digest/samples/demo/digest.toml",
        "digest/migrations/versions/0001_initial_schema.py",
        "digest/migrations/script.py.mako",
        "subscribers/service.py",
    ):
        assert expected in names, expected
    assert not any(name.startswith("tests/") for name in names)

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, digest; sys.stderr.write(digest.__file__ + '\\n');"
            "from digest.cli import main; sys.argv = ['digest', 'demo', 'd', '--json']; main()",
        ],
        cwd=elsewhere,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith(str(target))
    result = json.loads(done.stdout)
    assert result["sent"] == 20
    assert Path(result["preview"]).read_text(encoding="utf-8").count("</html>") == 1


def test_code_passes_the_linter() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [ruff, "check", "."], cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
