"""The distribution installs as keysync.* and runs from any folder (a package missing from pyproject's list
only shows up in a non-editable install)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("domain", "application", "infrastructure", "projections", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("keysync-*.whl")
    return built


def test_the_wheel_holds_every_module_of_every_layer(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "keysync/__init__.py" not in names  # keysync is a namespace package
    for layer in LAYERS:
        for module in [*(ROOT / layer).rglob("*.py"), *(ROOT / layer).rglob("*.yaml")]:
            assert f"keysync/{module.relative_to(ROOT).as_posix()}" in names, module


def test_the_installed_command_runs_from_another_folder(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Dependencies come from this environment's site-packages, but not its editable keysync finder:
    # only the unpacked wheel can provide keysync.
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()];"
        "import keysync.cli.main as m; assert m.__file__.startswith(sys.argv[1]), m.__file__;"
        "sys.argv = ['keysync', '--help']; m.main()"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site), deps],
        cwd="/",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: keysync" in result.stdout
