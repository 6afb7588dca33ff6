"""`grok run` stopped and continued through the real CLI: signals at a step boundary, a
checkpoint's precision and device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest
import torch
from conftest import TINY, grok_command, grok_env, read_rows, wait_for_step

from grok_cli.errors import GrokError
from grok_cli.training.run import run_experiment


def test_checkpoint_identity_includes_the_precision(run_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    assert run_experiment(run_cfg(*TINY, "steps=20"), run) == "completed"
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert state["identity"]["precision"] == "fp32"
    state["identity"]["precision"] = "bf16"  # as a precision=bf16 run on a GPU records it
    torch.save(state, path)
    with pytest.raises(GrokError, match="precision: 'bf16' in the checkpoint, 'fp32' here"):
        run_experiment(run_cfg(*TINY, "steps=40", "precision=bf16"), run)  # fp32 on a CPU
    del state["identity"]["precision"]  # written before precision was recorded
    torch.save(state, path)
    # taken as fp32, the only precision of every run before the key existed
    assert run_experiment(run_cfg(*TINY, "steps=40"), run) == "completed"


@pytest.mark.parametrize("batch_size", ["null", "32"])
def test_a_gpu_checkpoint_continues_on_a_cpu_or_is_refused_in_one_line(run_cfg, tmp_path,
                                                                      batch_size):
    """A checkpoint written on a 2-GPU machine: a CUDA generator's state for the minibatch
    sampler (Philox: 16 bytes, a CPU generator's is 5,056) and one state per GPU."""
    run = tmp_path / "run"
    assert run_experiment(run_cfg(*TINY, "steps=20", f"batch_size={batch_size}"), run) == (
        "completed")
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["rng"]["sampler"] = torch.zeros(16, dtype=torch.uint8)
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2
    torch.save(state, path)
    longer = run_cfg(*TINY, "steps=40", f"batch_size={batch_size}")
    if batch_size == "null":  # full batch draws no minibatches: it continues
        assert run_experiment(longer, run) == "completed"
    else:
        with pytest.raises(GrokError, match="minibatch sampler state of another kind of device"):
            run_experiment(longer, run)


# ---------------------------------------------------------------- interrupts

SIGNALLED = [*TINY, "steps=300", "ckpt_every=100", "batch_size=64"]  # minibatch: RNG matters


def test_sigterm_checkpoints_the_current_step_and_the_same_command_continues(run_cfg, tmp_path):
    """What SLURM sends before a preemption: exit 143, one line, and the same command then
    gives the uninterrupted run's rows, none missing or twice (the reference and the
    continuation run in-process: the same code on one thread, as the CLI's)."""
    assert run_experiment(run_cfg(*SIGNALLED), tmp_path / "straight") == "completed"
    uninterrupted = read_rows(tmp_path / "straight" / "metrics.csv")
    signum = signal.SIGTERM
    run = tmp_path / "run"
    args = [*SIGNALLED, f"hydra.run.dir={run}"]
    proc = subprocess.Popen(grok_command("run", *args), cwd=tmp_path, env=grok_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_step(run, 30, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum  # 143 for SIGTERM, 130 for SIGINT
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "interrupt" in line.lower()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"interrupted by {signum.name} at step ")
    assert lines[0].endswith(f"to continue: grok run {' '.join(args[:-1])} hydra.run.dir={run}")
    step = int(lines[0].split()[5])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["error"].endswith(f"at step {step}")
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == step
    assert int(read_rows(run / "metrics.csv")[-1]["step"]) < step

    assert run_experiment(run_cfg(*SIGNALLED), run) == "completed"
    got = read_rows(run / "metrics.csv")
    assert [r["step"] for r in got] == [r["step"] for r in uninterrupted]  # none missing or twice
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in got] == [
        {k: v for k, v in r.items() if k != "elapsed_s"} for r in uninterrupted]
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_ctrl_c_stops_at_a_step_boundary_with_exit_130(run_cfg, tmp_path):
    """SIGINT in-process (the same handler as SIGTERM above, through the CLI)."""
    run, done = tmp_path / "run", threading.Event()

    def interrupt_after_rows():
        while not done.wait(0.01):
            if (run / "metrics.csv").exists() and len(read_rows(run / "metrics.csv")) >= 3:
                os.kill(os.getpid(), signal.SIGINT)
                return

    threading.Thread(target=interrupt_after_rows, daemon=True).start()
    # As in a terminal (pytest itself may have been started with SIGINT ignored, as `cmd &` is)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises((SystemExit, KeyboardInterrupt)) as stopped:
            run_experiment(run_cfg(*TINY, "steps=100000"), run)
        restored = signal.getsignal(signal.SIGINT)
    finally:
        done.set()
        signal.signal(signal.SIGINT, outer)
    assert isinstance(stopped.value, SystemExit) and stopped.value.code == 130
    summary = json.loads((run / "summary.json").read_text())
    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert summary["status"] == "interrupted"
    assert summary["error"] == f"interrupted by SIGINT at step {step}"
    assert restored is signal.default_int_handler  # the run's handler is gone again


def test_an_ignored_signal_stays_ignored():
    """A job started in the background by a script (`grok run &`) ignores SIGINT: a Ctrl-C
    meant for the script must not stop it, so the run leaves SIGINT ignored."""
    from grok_cli.training.signals import StopSignals

    outer = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals().installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # still handled
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outer)
