"""`provision.py --local --dry-run` promises no change: it never starts the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer import cli, local


def test_a_local_plan_without_a_running_emulator_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def trap(*_: Any, **__: Any) -> None:
        raise AssertionError("a dry run started something")

    monkeypatch.setattr(local, "ensure_emulator", trap)
    monkeypatch.setattr(cli, "connect", trap)
    code = cli.provision_main(["--local", "--dry-run", "--state-file", str(tmp_path / "state.local.json")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: The local emulator is not running")
    assert "python provision.py --local" in captured.err
    assert not list(tmp_path.iterdir()), "no state, lock or sidecar file was written"
