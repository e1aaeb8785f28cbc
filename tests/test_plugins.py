"""Head plugins as a user adds them: the README example installed as its own package through its entry point,
and a plugin that raises on import, which must not break ``umt`` or the other plugins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from umt.plugins import PluginError, head_name, load, plugins, resolve_class_paths

REPO = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> str:
    """The fenced block that follows ``<!-- example:MARKER -->`` in the README."""
    match = re.search(rf"<!-- example:{marker} -->\n```\w+\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert match, f"README has no example:{marker} block"
    return match.group(1)


def install(package: Path, target: Path) -> None:
    """``pip install --no-deps --target TARGET PACKAGE`` with the build tools of this environment."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(package)], check=True, capture_output=True)


def umt(args: list[str], cwd: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """``umt ARGS`` in a subprocess that sees the packages installed under ``path``."""
    env = {**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "umt", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_builtin_heads_are_registered_and_load() -> None:
    assert {"alignment", "classification", "video_text"} <= set(plugins("heads"))
    assert {"synthetic", "kinetics400", "msrvtt"} <= set(plugins("datamodules"))
    assert head_name(load("heads", "classification")) == "classification"
    with pytest.raises(PluginError, match="no head plugin named 'nope'"):
        load("heads", "nope")
    resolved, changed = resolve_class_paths([{"class_path": "alignment"}, {"class_path": "a.b.C"}])
    assert changed and resolved == [{"class_path": "umt.heads.alignment.AlignmentHead"}, {"class_path": "a.b.C"}]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README plugin and a broken plugin, installed the way a user would, into one folder."""
    root = tmp_path_factory.mktemp("plugins")
    probe = root / "umt-linear-probe"
    probe.mkdir()
    (probe / "umt_linear_probe.py").write_text(readme_block("plugin-module"))
    (probe / "pyproject.toml").write_text(readme_block("plugin-pyproject"))
    broken = root / "umt-broken"
    broken.mkdir()
    (broken / "umt_broken_head.py").write_text('raise RuntimeError("this plugin is broken on purpose")\n')
    (broken / "pyproject.toml").write_text('[project]\nname = "umt-broken"\nversion = "0.1.0"\n\n'
                                           '[project.entry-points."umt.heads"]\nbroken = "umt_broken_head:Head"\n')
    target = root / "site"
    install(probe, target)
    install(broken, target)
    return target


def test_readme_plugin_is_listed_and_its_recipe_trains(site: Path, tmp_path: Path) -> None:
    listing = umt(["heads"], tmp_path, site)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "umt_linear_probe:LinearProbeHead" in rows["linear_probe"] and rows["linear_probe"].endswith("ok")
    assert "umt-linear-probe" in rows["linear_probe"]
    (tmp_path / "recipe.yaml").write_text(readme_block("plugin-recipe"))
    run = umt(["fit", "--config", "recipe.yaml", "--trainer.max_steps", "3"], tmp_path, site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=3` reached" in run.stderr + run.stdout


def test_broken_plugin_is_reported_and_breaks_nothing(site: Path, tmp_path: Path) -> None:
    listing = umt(["heads"], tmp_path, site)
    assert listing.returncode == 0, listing.stderr
    broken = next(line for line in listing.stdout.splitlines() if line.startswith("broken "))
    assert "umt-broken" in broken and "broken: RuntimeError: this plugin is broken on purpose" in broken
    assert next(line for line in listing.stdout.splitlines() if line.startswith("classification ")).endswith("ok")
    assert umt(["--help"], tmp_path, site).returncode == 0
    recipe = readme_block("plugin-recipe").replace("linear_probe", "classification")
    (tmp_path / "recipe.yaml").write_text(recipe)
    run = umt(["fit", "--config", "recipe.yaml", "--trainer.max_steps", "2"], tmp_path, site)
    assert run.returncode == 0, run.stderr[-3000:]
