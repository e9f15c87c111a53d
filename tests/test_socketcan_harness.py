"""SocketCAN harness (hil.socketcan): commands run on a real vcan, on the host kernel or in a
user-mode Linux guest. The ``socketcan``-marked tests boot a guest on machines without
SocketCAN (a few seconds each); they are never skipped: missing system packages are
installed by scripts/install-system-deps.sh."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil.socketcan import HarnessError, Result, choose_backend, run_on_vcan
from hil.socketcan._proc import group_members, run_group
from hil.socketcan.host import run_on_host
from hil.socketcan.uml import CPU_ENV, HALT_GRACE_S, UmlError, guest_cpu

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def system_deps():
    """user-mode-linux, kmod, can-utils, iproute2: installed by the project's script if missing."""
    done = subprocess.run([str(ROOT / "scripts" / "install-system-deps.sh")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"install-system-deps.sh failed:\n{done.stderr}"


def _live_uml_leftovers() -> list[str]:
    """Command lines of live UML processes whose harness directory is already removed:
    anything here outlived its run_on_vcan call (parallel runs still have their directory)."""
    leftovers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        for arg in cmdline:
            if arg.startswith("init=") and "bms-vcan-uml-" in arg and state != "Z":
                if not Path(arg[len("init="):]).parent.exists():
                    leftovers.append(" ".join(cmdline))
    return leftovers


def _live_with_arg(arg: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if arg in cmdline and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


ROUND_TRIPS = r"""
import socket, struct
fmt = "=IB3x8s"  # struct can_frame: id, dlc, pad, data
tx = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
rx = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
tx.bind(("vcan0",)); rx.bind(("vcan0",)); rx.settimeout(10)
rx.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FILTER, struct.pack("=II", 0x123, 0x7FF))
tx.send(struct.pack(fmt, 0x123, 4, bytes.fromhex("deadbeef")))
can_id, dlc, data = struct.unpack(fmt, rx.recv(16))
print(f"raw {can_id:#05x} {data[:dlc].hex()}", flush=True)

import can
with can.Bus(interface="socketcan", channel="vcan0") as tx, \
     can.Bus(interface="socketcan", channel="vcan0",
             can_filters=[{"can_id": 0x18FF50E5, "can_mask": 0x1FFFFFFF, "extended": True}]) as rx:
    tx.send(can.Message(arbitration_id=0x18FF50E5, is_extended_id=True, data=[1, 2, 3, 250]))
    msg = rx.recv(timeout=10)
    print("python-can", hex(msg.arbitration_id), msg.is_extended_id, msg.data.hex(), msg.channel)
"""


@pytest.mark.socketcan
def test_raw_af_can_and_python_can_round_trips_on_vcan0():
    """Two raw AF_CAN sockets, then two python-can socketcan buses, in one process."""
    result = run_on_vcan([sys.executable, "-c", ROUND_TRIPS], timeout_s=TIMEOUT_S)
    assert isinstance(result, Result)
    assert result.backend in ("host", "uml")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "raw 0x123 deadbeef\npython-can 0x18ff50e5 True 010203fa vcan0\n"
    assert not result.timed_out and 0 <= result.startup_s <= result.elapsed_s


@pytest.mark.socketcan
def test_exit_code_stderr_env_cwd_and_channels_come_back(tmp_path):
    (tmp_path / "marker.txt").write_text("found by relative path\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BMS_MARK": "a b 'c' $d"}  # exactly this
    result = run_on_vcan(
        'cat marker.txt; echo "$BMS_MARK"; pwd; env | grep -v "^PWD=" | sort | tr "\\n" " "; echo;'
        ' ip -br link show type vcan | cut -d" " -f1 | sort;'
        ' echo oops >&2; exit 42',
        channels=("vcan0", "can_fd1"), env=env, cwd=tmp_path, timeout_s=TIMEOUT_S)
    assert result.returncode == 42 and not result.timed_out
    lines = result.stdout.splitlines()
    assert lines[:4] == ["found by relative path", "a b 'c' $d", str(tmp_path),
                         "BMS_MARK=a b 'c' $d PATH=/usr/sbin:/usr/bin:/sbin:/bin "]
    assert {"vcan0", "can_fd1"} <= set(lines[4:])
    assert result.stderr == "oops\n"
    assert result.output == result.stdout + result.stderr


@pytest.mark.socketcan
def test_command_past_the_deadline_is_killed_and_reported_as_timed_out():
    token = "987.6543"  # unique argument: find the sleeper if it survived (host backend)
    timeout_s = 5.0
    t0 = time.monotonic()
    result = run_on_vcan(f"echo started; sleep {token}; echo never", timeout_s=timeout_s)
    wall_s = time.monotonic() - t0
    assert result.timed_out and result.returncode is None
    assert "never" not in result.stdout
    assert wall_s <= timeout_s + HALT_GRACE_S + 2.0
    assert _live_uml_leftovers() == []
    assert _live_with_arg(token) == []


def _uml_processes_of(umid_marker: str) -> dict[int, str]:
    """pid -> Cpus_allowed_list of the live host processes of the guest whose command line
    carries ``umid_marker`` (the kernel's helpers and every guest address space)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and umid_marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                status = (entry / "status").read_text()
                found[int(entry.name)] = re.search(r"Cpus_allowed_list:\s*(\S+)", status).group(1)
        except OSError:
            continue
    return found


@pytest.mark.socketcan
def test_the_guest_runs_on_one_host_cpu():
    """Every host process of a UML guest (kernel, helpers, the address spaces of the guest's
    programs, here a shell and its sleep) sits on the one CPU guest_cpu chose (the UML backend
    forced: it runs where the host kernel has SocketCAN too)."""
    seen: dict[int, str] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(_uml_processes_of("bms-vcan-uml-"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_on_vcan("sleep 2 & sleep 1; wait; echo done", timeout_s=TIMEOUT_S, backend="uml")
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 0 and "done" in result.stdout, result.output
    assert len(seen) >= 3, seen  # the kernel plus at least the guest's shell and a sleep
    cpu = guest_cpu()   # None only with a single allowed CPU: then that one
    assert set(seen.values()) == {str(cpu if cpu is not None else os.sched_getaffinity(0).pop())}, seen


def test_guest_cpu_follows_the_environment(monkeypatch):
    allowed = sorted(os.sched_getaffinity(0))
    monkeypatch.delenv(CPU_ENV, raising=False)
    assert guest_cpu() == (allowed[-1] if len(allowed) > 1 else None)
    monkeypatch.setenv(CPU_ENV, "any")
    assert guest_cpu() is None
    monkeypatch.setenv(CPU_ENV, str(allowed[0]))
    assert guest_cpu() == allowed[0]
    for bad in ("999999", "one", "-1"):
        monkeypatch.setenv(CPU_ENV, bad)
        with pytest.raises(UmlError, match=CPU_ENV):
            guest_cpu()


@pytest.mark.socketcan
def test_candump_captures_cansend_in_two_parallel_runs(tmp_path):
    """can-utils inside, and two runs at once (as under pytest -n 2): both succeed, and in
    separate guests each captures only its own frame."""
    results: dict[str, tuple[float, float, Result]] = {}

    def one(can_id: str) -> None:
        t0 = time.monotonic()
        # cansend repeats until candump (-n 1) has logged a frame: no race with its bind
        script = ("candump -L -n 1 vcan0 > dump.log & dump=$!; while kill -0 $dump 2>/dev/null;"
                  f" do cansend vcan0 {can_id}#DEADBEEF; sleep 0.2; done; wait; cat dump.log")
        work = tmp_path / can_id
        work.mkdir()
        r = run_on_vcan(script, cwd=work, timeout_s=TIMEOUT_S)
        results[can_id] = (t0, time.monotonic(), r)

    threads = [threading.Thread(target=one, args=(i,)) for i in ("101", "202")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {"101", "202"}
    (a0, a1, ra), (b0, b1, rb) = results["101"], results["202"]
    assert max(a0, b0) < min(a1, b1)  # they really overlapped
    for can_id, (_, _, r) in results.items():
        assert r.returncode == 0, r.output
        sent = can_id if r.backend == "uml" else "(101|202)"  # one host vcan0 is shared
        assert re.fullmatch(rf"\(\d+\.\d{{6}}\) vcan0 {sent}#DEADBEEF\n", r.stdout)
        assert (tmp_path / can_id / "dump.log").read_text() == r.stdout  # written to the host


@pytest.mark.socketcan
def test_interface_that_cannot_be_made_vcan_is_a_harness_error_not_a_hang():
    # "lo" passes the name check but is no CAN interface: the host refuses it, and in a
    # guest `ip link add dev lo type vcan` fails, so setup reports instead of running
    t0 = time.monotonic()
    expected = r"(?s)failed to set up.*RTNETLINK answers: File exists.*link add dev lo type vcan"
    with pytest.raises(HarnessError, match=expected):
        run_on_vcan("echo must-not-run", channels=("lo",), timeout_s=TIMEOUT_S)
    assert time.monotonic() - t0 < TIMEOUT_S
    assert _live_uml_leftovers() == []


@pytest.mark.socketcan
def test_bms_vcan_cli_exits_with_the_inner_code(capsys):
    from bms.cli import main

    rc = main(["vcan", "-v", "--", "sh", "-c", "ip -br link show vcan0 | cut -d' ' -f1; exit 5"])
    out, err = capsys.readouterr()
    assert rc == 5
    assert out == "vcan0\n"
    assert re.search(r"bms vcan: backend (host|uml), exit 5, [\d.]+ s", err)


HOST_BACKEND_IN_GUEST = r"""
from hil.socketcan import choose_backend, run_on_vcan
# root in a kernel with SocketCAN: vcan0 is up, vcan7 is created by `ip link add`
print(choose_backend(("vcan0", "vcan7")))
r = run_on_vcan("ip -br link show type vcan | cut -d' ' -f1 | sort | tr '\n' ' '; exit 3",
                channels=("vcan0", "vcan7"), timeout_s=20)
print(r.backend, r.returncode, r.stdout, r.startup_s)
r = run_on_vcan("echo started; sleep 50", timeout_s=1)
print(r.backend, r.timed_out, r.returncode, r.stdout.strip(), r.elapsed_s < 3)
"""


@pytest.mark.socketcan
def test_host_backend_for_real_inside_a_kernel_with_socketcan():
    """The laptop path (host backend, creating a missing interface as root) run for real: in
    a UML guest, whose kernel has SocketCAN, so it works on any machine the harness supports."""
    env = {k: v for k, v in os.environ.items() if k != "BMS_VCAN_BACKEND"}  # auto inside
    result = run_on_vcan([sys.executable, "-c", HOST_BACKEND_IN_GUEST], cwd=ROOT, env=env,
                         timeout_s=TIMEOUT_S, backend="uml")
    assert (result.returncode, result.stderr) == (0, ""), result.output
    assert result.stdout.splitlines() == [
        "host", "host 3 vcan0 vcan7  0.0", "host True None started True"]


# ---- no guest needed -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"command": []}, "empty command"),
    ({"command": "  "}, "empty shell command"),
    ({"command": "true", "channels": ()}, "at least one channel"),
    ({"command": "true", "channels": ("vcan0; reboot",)}, "invalid interface name"),
    ({"command": "true", "channels": ("a" * 16,)}, "invalid interface name"),
    ({"command": "true", "timeout_s": 0}, "timeout_s must be > 0"),
    ({"command": "true", "backend": "docker"}, "backend must be one of"),
    ({"command": "true", "cwd": "/nonexistent/dir"}, "cwd is not a directory"),
])
def test_bad_arguments_are_rejected_before_anything_runs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_on_vcan(**kwargs)


def test_forced_host_backend_is_either_usable_or_explains_the_laptop_setup():
    try:
        assert choose_backend(("vcan0",), "host") == "host"
    except HarnessError as exc:
        assert "sudo modprobe vcan; sudo ip link add dev vcan0 type vcan" in str(exc)
    assert choose_backend(("vcan0",), "uml") == "uml"


def test_interface_state_is_read_from_sysfs():
    from hil.socketcan.host import _interface_state

    assert _interface_state("lo") == "not-can"
    assert _interface_state("nosuchif0") == "missing"


def test_host_runner_reports_exit_codes_signals_and_missing_programs(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    r = run_on_host("echo out; echo err >&2; exit 3", timeout_s=10, env=env, cwd=str(tmp_path))
    assert (r["returncode"], r["stdout"], r["stderr"]) == (3, "out\n", "err\n")
    assert not r["timed_out"]
    r = run_on_host(["sh", "-c", "kill -TERM $$"], timeout_s=10, env=env, cwd=str(tmp_path))
    assert r["returncode"] == 128 + 15
    r = run_on_host(["/nonexistent/prog"], timeout_s=10, env=env, cwd=str(tmp_path))
    assert r["returncode"] == 127 and "No such file" in r["stderr"]


def test_process_group_is_killed_at_the_deadline_children_included():
    token = "876.5432"
    t0 = time.monotonic()
    # the shell backgrounds a child in the same group, then blocks: both must die
    run = run_group(["sh", "-c", f"sleep {token} & sleep {token}"], timeout_s=0.5,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert run.killed_at_deadline and run.returncode is None
    assert time.monotonic() - t0 < 5
    assert _live_with_arg(token) == []


def test_group_helpers_leave_nothing_after_a_normal_exit():
    token = "765.4321"
    # the leader exits at once, leaving a background child in its group: it is killed too
    run = run_group(["sh", "-c", f"sleep {token} & exit 0"], timeout_s=10,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert run.returncode == 0 and not run.killed_at_deadline
    assert _live_with_arg(token) == []
    assert group_members(2**22 + 12345) == []  # no such group
