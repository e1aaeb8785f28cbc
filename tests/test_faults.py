"""The fault suite: ``umt fit`` killed by real signals and resumed, a truncated checkpoint, a NaN loss, every
listed user mistake (one line, exit 2), unreadable videos and list lines inside an epoch."""

from __future__ import annotations

import csv
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import umt.lightning  # noqa: F401  (imported before any capture: Lightning's log handler keeps the real stderr)
from conftest import write_official_classifier
from umt.cli import main
from umt.data.synthetic import SyntheticConfig, generate
from umt.errors import UsageError

RECIPE = Path(__file__).parents[1] / "recipes" / "demo" / "classification_tiny.yaml"
STEPS = 12
"""Optimizer steps of the tiny recipe: 2 epochs x 24 clips / batch 4."""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's synthetic set (6 classes, 24 / 12 / 12 clips), written once."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, SyntheticConfig(num_classes=6, train_size=24, val_size=12, test_size=12, seed=0))
    return root


def fit_args(root: Path, run: Path, *extra: str) -> list[str]:
    """``umt fit`` arguments of the tiny recipe on ``root`` writing into ``run``."""
    return ["fit", "--config", str(RECIPE), "--data.root", str(root), "--trainer.default_root_dir", str(run),
            "--last_checkpoint.every_n_train_steps", "2", *extra]


def umt_process(*args: str) -> subprocess.Popen[str]:
    """``python -m umt ARGS`` in a subprocess (``tests`` importable, stdout and stderr together)."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "umt", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("umt") and ": error: " in line]


@pytest.fixture(scope="module")
def straight(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``last.ckpt`` of the uninterrupted run."""
    run = tmp_path_factory.mktemp("straight")
    process = umt_process(*fit_args(data_root, run))
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    return last(run)


@pytest.mark.parametrize(("signum", "status", "at"), [
    (signal.SIGTERM, 143, STEPS // 2), (signal.SIGINT, 130, None),
    pytest.param(signal.SIGTERM, 143, None, marks=pytest.mark.slow)])
def test_killed_run_saves_its_step_and_resumes_to_the_same_weights(data_root: Path, tmp_path: Path,
                                                                     straight: dict, signum: int,
                                                                     status: int, at: int | None) -> None:
    """A real signal at a random step (or at ``at``: the first epoch's last step, where validation runs between
    the save and the next training step): exit 128 + signal, ``last.ckpt`` at the step reached (it is saved after
    the step the signal lands in), and ``--ckpt_path last`` ends with the uninterrupted run's weights."""
    at = at or random.Random().randint(1, STEPS - 3)
    run = tmp_path / "run"
    process = umt_process(*fit_args(data_root, run, "--trainer.callbacks+=fault_helpers.ReportSteps"))
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if line.strip() == f"step {at}":
            process.send_signal(signum)
            break
    output = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == status, f"signal at step {at}: {output[-3000:]}"
    interrupted = last(run)
    assert at <= interrupted["global_step"] < STEPS, f"signal at step {at}"
    assert f"saved {run / 'checkpoints' / 'last.ckpt'} at step {interrupted['global_step']}" in output

    resumed = umt_process(*fit_args(data_root, run, "--ckpt_path", "last"))
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    final = last(run)
    assert final["global_step"] == STEPS == straight["global_step"]
    for name, expected in straight["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], expected, msg=f"{name} (signal at step {at})")
    head = "heads.classification.fc.weight"
    assert not torch.equal(interrupted["state_dict"][head], straight["state_dict"][head])


def test_truncated_last_checkpoint_is_named(data_root: Path, tmp_path: Path, straight: dict,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    whole = tmp_path / "whole.ckpt"
    torch.save(straight, whole)
    (run / "checkpoints" / "last.ckpt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(data_root, run, "--ckpt_path", "last"))
    assert exit_info.value.code == 2
    [line] = error_lines(capsys.readouterr().err)
    assert "last.ckpt: truncated or corrupt checkpoint" in line


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(data_root, run, "--trainer.callbacks+=fault_helpers.PoisonLoss"))  # NaN videos at step 3
    assert exit_info.value.code == 1
    [line] = error_lines(capsys.readouterr().err)
    assert "the training loss is nan at step 3" in line and "(step 2)" in line
    kept = last(run)
    assert kept["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values())


def test_unreadable_video_and_list_line_are_replaced_and_counted(data_root: Path, tmp_path: Path) -> None:
    """One truncated video and one list line naming a missing file: the epoch runs, both are replaced, and
    ``data/train_replaced_videos`` counts them (every clip is drawn once per epoch: 24 clips, batch 4)."""
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    lines = (root / "train.csv").read_text().splitlines()
    broken = root / lines[0].rsplit(",", 1)[0]
    broken.write_bytes(broken.read_bytes()[:100])
    lines[1] = "no/such/clip.mp4," + lines[1].rsplit(",", 1)[1]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    plain_list = ["--data", "umt.datamodules.video_list.VideoListDataModule", "--data.root", str(root),
                  "--data.num_classes", "6"]  # the synthetic module would write the broken files anew
    process = umt_process(*fit_args(root, run, *plain_list, "--trainer.max_epochs", "1", "--trainer.logger",
                                    "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(run)))
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    assert broken.name in output and "no/such/clip.mp4" in output
    [metrics] = run.rglob("metrics.csv")
    counts = [float(row["data/train_replaced_videos"]) for row in csv.DictReader(metrics.open())
              if row.get("data/train_replaced_videos")]
    assert counts == [2.0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A folder with a binary file, a video list with a header row, and an official classifier."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 4)
    video = next(data_root.rglob("*.mp4"))
    (folder / "header.csv").write_text(f"path,label\n{video},0\n")
    write_official_classifier(folder / "official.pth")
    return folder


LIBRARY_CASES = {
    "list is a folder": (["data", "check", "{inputs}"], "a folder; give the video list file"),
    "list is binary": (["data", "check", "{inputs}/binary.csv"], "not a text video list (binary data)"),
    "workers 0": (["data", "check", "{inputs}/header.csv", "--workers", "0"], "--workers must be at least 1"),
    "top_k 0": (["classify", "--top_k", "0"], "--top_k must be at least 1, got 0"),
    "top-k negative": (["classify", "--top-k", "-2"], "--top_k must be at least 1, got -2"),
    "unknown model": (["classify", "--model", "umt_x99"], "--model umt_x99: unknown model; choose one of umt_b16"),
    "convert frames 0": (["convert", "{inputs}/official.pth", "{tmp}/out.pt", "--num_frames", "0"],
                         "--num_frames must be at least 1, got 0"),
    "convert size negative": (["convert", "{inputs}/official.pth", "{tmp}/out.pt", "--img-size", "-64"],
                              "--img_size must be at least 1, got -64"),
    "convert into a folder": (["convert", "{inputs}/official.pth", "{tmp}"], "a folder; give a file path"),
    "info of a folder": (["info", "{inputs}"], "--checkpoint {inputs}: a folder; give a file"),
    "features into a folder": (["embed", "{inputs}/header.csv", "--out", "{tmp}"], "--out {tmp}: a folder"),
    "unknown option": (["info", "{inputs}/official.pth", "--flopz"],
                       "unknown option --flopz; did you mean --flops? umt info --help lists the options"),
    "abbreviated option": (["data", "synth", "{tmp}/synthetic", "--train", "5"],
                           "unknown option --train; did you mean --train_size? umt data synth --help"),
    "missing argument": (["info"], "missing CHECKPOINT: umt info CHECKPOINT ... (see umt info --help)"),
    "missing nested argument": (["data", "check"], "missing ANNOTATION: umt data check ANNOTATION"),
    "wrong type": (["classify", "--top_k", "many"], "--top_k many: expected int"),
    "wrong type of an optional": (["classify", "--num-frames", "x"], "--num_frames x: expected int or None"),
    "unknown subcommand": (["clasify"], "invalid choice: 'clasify'"),
}


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_user_mistake_gives_one_line_and_exit_2(case: str, inputs: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args, message = LIBRARY_CASES[case]
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(inputs=inputs, tmp=tmp_path) for arg in args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("umt ") and message.format(inputs=inputs, tmp=tmp_path) in line


FIT_CASES = {
    "data root missing": (["--data", "umt.datamodules.video_list.VideoListDataModule", "--data.root", "{tmp}/none",
                           "--data.num_classes", "6"], "{tmp}/none/train.csv: video list not found"),
    "classes differ": (["--data", "umt.datamodules.video_list.VideoListDataModule", "--data.root", "{root}",
                        "--data.num_classes", "3"],
                       "the recipe has 3 classes but {root}/classes.txt names 6: set --data.num_classes 6"),
    "batch size 0": (["--data.batch_size", "0"], "--data.batch_size must be at least 1, got 0"),
    "dashed nested key": (["--data.init_args.batch-size", "2"],
                          "option --data.init_args.batch-size: keys are spelled with underscores: "
                          "--data.init_args.batch_size"),
    "checkpoint is a folder": (["--ckpt_path", "{tmp}"], "--ckpt_path {tmp}: a folder"),
    "unknown option": (["--trainer.max_epoks", "3"], "unknown option --trainer.max_epoks; did you mean "
                       "--trainer.max_epochs? umt fit --help lists the options"),
    "abbreviated option": (["--trainer.max_epoch", "3"], "unknown option --trainer.max_epoch; did you mean "
                           "--trainer.max_epochs? umt fit --help lists the options"),
    "devices not a count": (["--trainer.devices", "abc"], "--trainer.devices abc: expected a count (2), -1 (all "
                            "devices), device indices (0,1 or [0, 1]) or auto"),
    "devices the accelerator refuses": (["--trainer.devices", "0,1"], "--trainer.devices 0,1: `devices` selected "
                                        "with `CPUAccelerator` should be an int > 0"),
    "unknown option of the data module": (["--data.bogus", "3"], "unknown option --data.bogus of "
                                          "umt.datamodules.video_list.SyntheticDataModule"),
    "wrong type": (["--model.optimizer.lr", "fast"], "--model.optimizer.lr fast: expected float"),
    "wrong type of a data option": (["--data.batch_size", "four"], "--data.batch_size four: expected int"),
    "bad class path": (["--data", "no.such.Module"], "--data no.such.Module: cannot import it (No module named"),
    "unknown data module name": (["--data", "nope"], "--data nope: neither an installed name nor a class path"),
    "unknown head": (["--model.heads", "[{{class_path: nope}}]"], "head class_path 'nope': not an installed head"),
    "unknown model size": (["--model.encoder.size", "umt_x"], "unknown model 'umt_x'; known models: umt_b16"),
    "epochs out of range": (["--trainer.max_epochs", "-3"], "`max_epochs` must be a non-negative integer or -1"),
    "recipe missing": (["--config", "{tmp}/none.yaml"], "--config: File does not exist: '{tmp}/none.yaml'"),
}


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_mistake_gives_one_line_and_exit_2(case: str, data_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    extra, message = FIT_CASES[case]
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(data_root, tmp_path / "run", *(arg.format(tmp=tmp_path, root=data_root) for arg in extra)))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("umt fit: error: ") and message.format(tmp=tmp_path, root=data_root) in line


def test_fit_without_recipe_names_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "umt validate: error: missing --model.heads, --data: give them in a recipe (--config RECIPE.yaml) or as "
        "options"]


def test_traceback_flag_shows_the_full_error(inputs: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--traceback`` (anywhere) lets the error through with its traceback, as ``UMT_DEBUG=1``; parse errors
    keep jsonargparse's whole report."""
    monkeypatch.setenv("UMT_DEBUG", "0")  # main sets it to 1; removed after the test
    with pytest.raises(UsageError, match="a folder; give a file"):
        main(["info", "--traceback", str(inputs)])
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "--top_k", "many", "--traceback"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage: " in err and "Expected a <class 'int'>. Got value: many" in err
    monkeypatch.setenv("UMT_DEBUG", "0")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "add --traceback to any command" in " ".join(capsys.readouterr().out.split())


def test_traceback_flag_in_a_process(inputs: Path) -> None:
    plain = umt_process("info", str(inputs))
    shown = umt_process("info", str(inputs), "--traceback")
    plain_output, shown_output = plain.communicate(timeout=120)[0], shown.communicate(timeout=120)[0]
    assert plain.returncode == 2 and plain_output.strip().splitlines() == [
        f"umt info: error: --checkpoint {inputs}: a folder; give a file"]
    assert shown.returncode == 1 and "Traceback (most recent call last)" in shown_output
    assert shown_output.strip().endswith(f"umt.errors.UsageError: --checkpoint {inputs}: a folder; give a file")


def test_header_row_is_skipped_and_outputs_get_their_folder(inputs: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    main(["data", "check", str(inputs / "header.csv")])
    assert "1 of 1 videos readable" in capsys.readouterr().out
    out = tmp_path / "new" / "folder" / "native.pt"
    main(["convert", str(inputs / "official.pth"), str(out), "--num-frames", "4", "--img_size", "64"])
    assert out.is_file()


def test_help_lists_every_subcommand_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "convert", "info", "classify", "embed", "data"):
        assert re.search(rf"^    {command}\b", out, re.MULTILINE), command
    main(["--version"])
    assert capsys.readouterr().out.startswith("umt 0.")


def test_help_of_every_command_does_not_import_torch() -> None:
    """``umt --help`` and every library subcommand's ``--help`` stay free of the heavy imports (what makes them
    answer in well under 2 s)."""
    code = ("import sys\nfrom umt.cli import COMMANDS, main\n"
            "commands = [[name] for name, c in COMMANDS.items() if callable(c)]\n"
            "commands += [['data', name] for name in COMMANDS['data']]\n"
            "for command in [[], *commands]:\n"
            "    try: main([*command, '--help'])\n"
            "    except SystemExit: pass\n"
            "print(len(commands), sorted(m for m in ('torch', 'lightning', 'transformers', 'open_clip', 'av', 'timm') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    count, imported = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 14 and imported == "[]"
    for command in ("info", "convert", "embed", "ask", "check", "ava-eval"):
        assert f"usage: umt [options] {command}" in result.stdout or f"umt [options] data [options] {command}" in \
            result.stdout, command
