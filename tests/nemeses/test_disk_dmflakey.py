"""dm-flakey: the tables Ratchet loads, the refusal on hosts without it, and (where present) a real device.

The tables are checked against the target's documented syntax
(``<start> <len> flakey <dev> <offset> <up> <down> [<#args> <args>...]``). The real
device test runs only where ``dmsetup targets`` lists flakey (not on this project's CI
kernel, which has no device-mapper): it is skipped there with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.capabilities import Capability, fault_refusal, probe_dm_flakey
from nemeses.disk.dmflakey import FlakeyDisk, FlakeyMode, flakey_available, flakey_table, linear_table


def test_linear_table_passes_every_sector_through() -> None:
    assert linear_table("/dev/loop3", 524288) == "0 524288 linear /dev/loop3 0"


@pytest.mark.parametrize(
    ("mode", "tail"),
    [
        (FlakeyMode(up_s=5, down_s=2, feature="error_reads"), "5 2 1 error_reads"),
        (FlakeyMode(up_s=0, down_s=3, feature="error_writes"), "0 3 1 error_writes"),
        (FlakeyMode(up_s=4, down_s=1, feature="drop_writes"), "4 1 1 drop_writes"),
        (
            FlakeyMode(up_s=1, down_s=1, feature="corrupt_bio_byte", corrupt_byte=32, corrupt_value=255),
            "1 1 5 corrupt_bio_byte 32 w 255 0",
        ),
    ],
)
def test_flakey_tables(mode: FlakeyMode, tail: str) -> None:
    assert flakey_table("/dev/loop0", 1024, mode) == f"0 1024 flakey /dev/loop0 0 {tail}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"up_s": 1, "down_s": 1, "feature": "explode"},
        {"up_s": 1, "down_s": 0, "feature": "drop_writes"},
        {"up_s": 1, "down_s": 1, "feature": "corrupt_bio_byte", "corrupt_direction": "x"},
        {"up_s": 1, "down_s": 1, "feature": "corrupt_bio_byte", "corrupt_value": 256},
    ],
)
def test_bad_modes_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FlakeyMode(**kwargs)


def test_a_host_without_flakey_refuses_the_fault_with_the_reason() -> None:
    cap = probe_dm_flakey()
    if cap.available:
        pytest.skip("this host has dm-flakey; the refusal is for hosts without it")
    caps = {"namespaces": Capability("namespaces", True, "ok"), "dm-flakey": cap}
    reason = fault_refusal("dm-flakey", caps)
    assert reason is not None and "dm-flakey" in reason and cap.detail in reason


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="loop and device-mapper devices need root")
def test_a_real_flakey_device_drops_writes_while_down(tmp_path: Path) -> None:
    ok, detail = flakey_available()
    if not ok:
        pytest.skip(f"no dm-flakey on this host: {detail}")
    disk = FlakeyDisk("n1", tmp_path / "data", tmp_path / "backing.img", size_bytes=64 * 1024 * 1024)
    disk.setup()
    try:
        (tmp_path / "data" / "f").write_bytes(b"x" * 4096)
        os.sync()
        disk.inject(FlakeyMode(up_s=0, down_s=60, feature="error_writes"))
        fd = os.open(tmp_path / "data" / "g", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"y" * 4096, 0)
            with pytest.raises(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
        disk.heal()
    finally:
        disk.teardown()
    assert not (tmp_path / "backing.img").exists()


def test_ratchet_run_refuses_dm_flakey_here_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    if probe_dm_flakey().available:
        pytest.skip("this host has dm-flakey")
    scenario = tmp_path / "flakey.toml"
    scenario.write_text('[nemesis]\nfaults = ["dm-flakey"]\n')
    assert main(["run", str(scenario), "--store", str(tmp_path / "store")]) == 3
    err = capsys.readouterr().err
    assert "'dm-flakey' fault needs dm-flakey" in err and "modprobe dm-flakey" in err
    assert not (tmp_path / "store").exists()
