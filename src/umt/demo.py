"""``umt demo``: the whole UMT recipe at toy scale on the built-in synthetic dataset, on CPU, with no download.

1. Write the synthetic dataset (``umt.data.synthetic.generate``): unlabelled training clips, of which the first
   ``labelled_clips`` keep their action labels, and a held-out test split.
2. Train the teacher: a small open_clip CLIP (QuickGELU ViT image tower, the layout ``CLIPTeacher`` loads, and a
   word-level text tower) trained contrastively on single frames against their frame captions (where the shape
   is, how large and how visible). No pretrained CLIP exists offline; this one is trained here.
3. Stage 1 (``UMTModule`` with the ``alignment`` head): the frozen teacher's attention masks each frame, the
   student sees the visible tokens of the unlabelled clips and aligns its last layers with the teacher's.
4. Fine-tune (``UMTModule`` with the ``classification`` head) the stage-1 student on the labelled clips, and the
   same fine-tuning from random init, and report both held-out accuracies.

The fine-tuning from random init needs neither the teacher nor stage 1: it runs in a spawned process on one thread
while this process trains the teacher on one thread, so both cores of a small machine are busy; stage 1 and the
other fine-tuning then use torch's threads. Every phase has a fixed thread count, so a seed gives the same run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import re
import resource
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from umt.checkpoints import save_native
from umt.data.annotations import read_video_list
from umt.data.decoding import read_frames
from umt.data.samplers import segment_test_indices, segment_train_indices
from umt.data.synthetic import SyntheticConfig, class_names, generate
from umt.data.transforms import normalise
from umt.heads.alignment import AlignmentHead
from umt.heads.base import DataInfo
from umt.heads.classification import ClassificationHead
from umt.models.factory import classifier_from_module
from umt.module import UMTModule
from umt.optim import warmup_cosine
from umt.options import EncoderConfig, MaskingConfig, OptimizerConfig, TeacherSpec
from umt.progress import progress_bar


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and schedules of the demo (the defaults are the full demo; tests shrink them).

    Data: ``unlabelled_clips`` training clips (all used without labels by the teacher and stage 1), the first
    ``labelled_clips`` of them with labels for fine-tuning, ``test_clips`` held out; ``num_frames`` of the 16
    rendered frames per clip at 64 pixels.
    """

    num_classes: int = 8
    unlabelled_clips: int = 2000
    labelled_clips: int = 240
    test_clips: int = 240
    num_frames: int = 4
    # student: UMT-B/16's layout resized
    embed_dim: int = 64
    depth: int = 3
    num_heads: int = 2
    patch_size: int = 8
    drop_path_rate: float = 0.1
    # teacher: open_clip CLIP image tower as ``create_teacher("clip_b16", ...)`` loads it, plus a text tower
    teacher_width: int = 64
    teacher_layers: int = 3
    teacher_heads: int = 2
    teacher_dim: int = 64
    text_width: int = 64
    text_layers: int = 2
    teacher_epochs: int = 40
    teacher_batch_size: int = 128
    teacher_lr: float = 2e-3
    # stage 1
    align_layers: int = 2
    mask_ratio: float = 0.8
    pretrain_epochs: int = 6
    pretrain_batch_size: int = 32
    pretrain_lr: float = 1e-3
    # fine-tuning (the same for both starts)
    finetune_epochs: int = 60
    finetune_batch_size: int = 16
    finetune_lr: float = 1e-3
    layer_decay: float = 1.0
    head_pool: str = "frames"

    @property
    def synthetic(self) -> SyntheticConfig:
        return SyntheticConfig(num_classes=self.num_classes, train_size=self.unlabelled_clips, val_size=0,
                               test_size=self.test_clips)

    def student(self, **options: Any) -> EncoderConfig:
        """The student encoder: UMT-B/16's layout resized, with ``options``."""
        return EncoderConfig(embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads,
                             patch_size=self.patch_size, img_size=self.synthetic.size, num_frames=self.num_frames,
                             drop_path_rate=self.drop_path_rate, pos_embed="extend", **options)

    def teacher(self, weights: str) -> TeacherSpec:
        """The demo's CLIP teacher loaded from ``weights``."""
        return TeacherSpec(weights=weights, width=self.teacher_width, layers=self.teacher_layers,
                           heads=self.teacher_heads, output_dim=self.teacher_dim, patch_size=self.patch_size,
                           image_size=self.synthetic.size, return_layers=self.align_layers)


def _normalised(frames: Tensor) -> Tensor:
    """uint8 ``[B, T, H, W, 3]`` -> float ``[B, 3, T, H, W]``: ``normalise`` on every clip at once (element-wise,
    so the values are those of one clip at a time)."""
    batch, frames_per_clip = frames.shape[:2]
    video = normalise(frames.flatten(0, 1))  # [3, B*T, H, W]
    return video.unflatten(1, (batch, frames_per_clip)).transpose(0, 1).contiguous()


def _collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``Clips`` items -> a batch whose ``video`` is normalised, float ``[B, 3, T, H, W]``."""
    batch = default_collate(items)
    batch["video"] = _normalised(batch["video"])
    return batch


def _collate_frames(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """``CaptionedFrames`` items -> normalised images float ``[B, 3, H, W]`` and tokens ``[B, L]``."""
    images, tokens = default_collate(items)
    return _normalised(images[:, None])[:, :, 0], tokens


class Clips(Dataset):
    """Decoded clips held in memory (uint8 ``[N, L, H, W, 3]``). Training items take ``num_frames`` by TSN
    sampling (no flip: it would swap left and right); test items the segment centres.
    Items are ``{"video": uint8 [T, H, W, 3], "label": int, "index": int, "view": 0}``; ``_collate_clips``
    normalises a batch of them."""

    def __init__(self, clips: Tensor, labels: Tensor, num_frames: int, train: bool, seed: int = 0) -> None:
        self.clips, self.labels, self.num_frames, self.train = clips, labels, num_frames, train
        self.rng = np.random.default_rng(seed)
        self.test_indices = segment_test_indices(clips.shape[1], num_frames, 1, 0)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        length = self.clips.shape[1]
        indices = segment_train_indices(length, self.num_frames, self.rng) if self.train else self.test_indices
        return {"video": self.clips[index, indices], "label": int(self.labels[index]), "index": index, "view": 0}


class CaptionedFrames(Dataset):
    """One random frame of a clip (uint8 ``[H, W, 3]``; ``_collate_frames`` normalises a batch) with that frame's
    caption tokens."""

    def __init__(self, clips: Tensor, tokens: Tensor, seed: int = 0) -> None:
        self.clips, self.tokens = clips, tokens
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        frame = int(self.rng.integers(self.clips.shape[1]))
        return self.clips[index, frame], self.tokens[index, frame]


class WordTokenizer:
    """Word-level tokenizer of the captions: 0 pads, then the words, then start and end; the end token has the
    largest id, as open_clip's text tower pools at the argmax token."""

    def __init__(self, texts: list[str], context_length: int = 16) -> None:
        self.words = sorted({word for text in texts for word in self.split(text)})
        self.ids = {word: i + 1 for i, word in enumerate(self.words)}
        self.start, self.end = len(self.words) + 1, len(self.words) + 2
        self.context_length = context_length

    @property
    def vocab_size(self) -> int:
        return self.end + 1

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"[a-z]+", text.lower())

    def __call__(self, texts: list[str]) -> Tensor:
        """Token ids ``[len(texts), context_length]`` (unknown words map to 0)."""
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start, *(self.ids.get(w, 0) for w in self.split(text))][: self.context_length - 1]
            out[row, : len(ids) + 1] = torch.tensor([*ids, self.end])
        return out


class CaptionCLIP(L.LightningModule):
    """A small open_clip CLIP trained with the symmetric InfoNCE loss on frames against their captions (frames
    with the same caption are all positives). The image embedding is trained twice: as CLIP's pooled token and
    as the mean of the patch tokens through ``ln_post`` and ``proj`` (the features the UMT student aligns with,
    so the patch tokens carry what the caption says)."""

    def __init__(self, vocab_size: int, config: DemoConfig, context_length: int) -> None:
        super().__init__()
        c = config
        vision = CLIPVisionCfg(layers=c.teacher_layers, width=c.teacher_width,
                               head_width=c.teacher_width // c.teacher_heads, patch_size=c.patch_size,
                               image_size=c.synthetic.size)
        text = CLIPTextCfg(context_length=context_length, vocab_size=vocab_size, width=c.text_width,
                           heads=max(c.text_width // 32, 1), layers=c.text_layers)
        self.clip = CLIP(c.teacher_dim, vision, text, quick_gelu=True)
        self.lr = c.teacher_lr

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """``(images [B, 3, H, W], tokens [B, L])`` -> InfoNCE loss."""
        images, tokens = batch
        visual = self.clip.visual
        visual.output_tokens = True
        pooled, patches = visual(images)
        visual.output_tokens = False
        text = self.clip.encode_text(tokens, normalize=True)
        same = (tokens[:, None] == tokens[None]).all(-1).float()
        targets = same / same.sum(1, keepdim=True)
        loss = torch.zeros((), device=images.device)
        for image in (pooled, patches.mean(1) @ visual.proj):
            logits = self.clip.logit_scale.exp() * F.normalize(image, dim=-1) @ text.T
            loss = loss + (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 4
        self.log("teacher/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.05},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=self.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = max(total // 10, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total, 0.0))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _load_split(root: Path, split: str, progress: bool,
                count: int | None = None) -> tuple[Tensor, Tensor, list[list[str]]]:
    """Every frame of every clip (the first ``count`` if given) of ``split`` (uint8 ``[N, L, H, W, 3]``), labels
    ``[N]``, frame captions."""
    records = read_video_list(root / f"{split}.csv", root)[:count]
    entries = {e["video"]: e["frame_captions"] for e in json.loads((root / f"{split}_captions.json").read_text())}
    length = SyntheticConfig().num_frames
    clips = torch.stack([read_frames(r.path, range(length), threads=1, parallel=1)
                         for r in progress_bar(records, desc=f"decoding {split}", unit="clip", enabled=progress)])
    labels = torch.tensor([r.label for r in records])
    return clips, labels, [entries[r.path.relative_to(root).as_posix()] for r in records]


def _trainer(out: Path, epochs: int, progress: bool) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                     enable_model_summary=False, enable_progress_bar=progress, default_root_dir=out,
                     num_sanity_val_steps=0)


def _loader(dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
    collate = _collate_frames if isinstance(dataset, CaptionedFrames) else _collate_clips
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=0,
                      collate_fn=collate)


def _finetune(checkpoint: Path | None, data: dict[str, Tensor], c: DemoConfig, out: Path, seed: int,
              progress: bool) -> tuple[float, UMTModule]:
    """Held-out top-1 of the fine-tuning from ``checkpoint`` (a stage-1 file) or from random init, and the
    fine-tuned module."""
    L.seed_everything(seed + 2, verbose=False)
    head = partial(ClassificationHead, num_classes=c.num_classes, init_scale=1.0, head_pool=c.head_pool)
    optimizer = OptimizerConfig(lr=c.finetune_lr * 256 / c.finetune_batch_size, min_lr=0.0, warmup_lr=0.0,
                                warmup_epochs=max(c.finetune_epochs / 10, 1), layer_decay=c.layer_decay)
    module = UMTModule([head], encoder=c.student(), optimizer=optimizer,
                       checkpoint=None if checkpoint is None else str(checkpoint),
                       data_info=DataInfo(clips_per_step=c.finetune_batch_size))
    n = c.labelled_clips
    train = Clips(data["clips"][:n], data["labels"][:n], c.num_frames, True, seed)
    test = Clips(data["test_clips"], data["test_labels"], c.num_frames, False)
    trainer = _trainer(out, c.finetune_epochs, progress)
    trainer.fit(module, _loader(train, c.finetune_batch_size, True))
    trainer.test(module, _loader(test, 60, False), verbose=False)
    return float(trainer.callback_metrics["test/classification/top1"]), module


def _quiet() -> None:
    """Silence the warnings and Lightning's notes that do not concern the demo."""
    for pattern in (".*does not have many workers.*", ".*GPU available but not used.*", ".*in eval mode.*",
                    ".*no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", pattern)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _finetune_scratch(root: Path, c: DemoConfig, out: Path, seed: int, submitted: float) -> dict[str, float]:
    """The fine-tuning from random init in a process of its own on one thread (it decodes the labelled and the test
    clips itself): its held-out accuracy, the wall seconds since ``submitted`` (``time.time()``) and the process's
    CPU seconds (start-up and decoding included)."""
    torch.set_num_threads(1)
    _quiet()
    clips, labels, _ = _load_split(root, "train", False, count=c.labelled_clips)
    test_clips, test_labels, _ = _load_split(root, "test", False)
    data = {"clips": clips, "labels": labels, "test_clips": test_clips, "test_labels": test_labels}
    accuracy, _ = _finetune(None, data, c, out, seed, False)
    return {"accuracy": accuracy, "wall_s": time.time() - submitted, "cpu_s": time.process_time()}


def run_demo(out: str | Path = "demo", seed: int = 0, progress: bool = True,
             config: DemoConfig | None = None) -> dict[str, Any]:
    """Run the demo, print the table and write ``out/metrics.json``; returns the metrics.

    Args:
        out: output folder: the synthetic dataset in ``out/data``; beside it the teacher (``teacher_clip.pt``),
            the stage-1 student (``stage1_student.pt``, official stage-1 layout) and the fine-tuned classifier
            (``classifier.pt``, with the class names; ``umt classify --video VIDEO --checkpoint out/classifier.pt``).
        seed: seed of all training (the dataset itself is fixed).
        progress: progress bars.
        config: sizes and schedules (default: the full demo).
    """
    c = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    started = clock = time.perf_counter()
    cpu_clock = time.process_time()

    def lap(name: str, children: float = 0.0) -> None:
        """Wall and CPU seconds (of this process, plus ``children``) since the last lap."""
        nonlocal clock, cpu_clock
        timings[name] = round(time.perf_counter() - clock, 1)
        cpu[name] = round(time.process_time() - cpu_clock + children, 1)
        clock, cpu_clock = time.perf_counter(), time.process_time()

    _quiet()
    writers = _children_cpu()
    root = generate(out / "data", c.synthetic, progress=progress, workers=2)
    writers = _children_cpu() - writers
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        scratch = pool.submit(_finetune_scratch, root, c, out, seed, time.time())
        clips, labels, frame_captions = _load_split(root, "train", progress)
        test_clips, test_labels, _ = _load_split(root, "test", progress)
        data = {"clips": clips, "labels": labels, "test_clips": test_clips, "test_labels": test_labels}
        lap("data_s", writers)

        L.seed_everything(seed, verbose=False)
        tokenizer = WordTokenizer([text for texts in frame_captions for text in texts])
        tokens = torch.stack([tokenizer(texts) for texts in frame_captions])
        clip = CaptionCLIP(tokenizer.vocab_size, c, tokenizer.context_length)
        with _threads(1):  # beside the fine-tuning from scratch
            _trainer(out, c.teacher_epochs, progress).fit(
                clip, _loader(CaptionedFrames(clips, tokens, seed), c.teacher_batch_size, True))
        teacher_file = out / "teacher_clip.pt"
        torch.save(clip.clip.state_dict(), teacher_file)
        lap("teacher_s")

        L.seed_everything(seed + 1, verbose=False)
        pretrain = UMTModule(
            [AlignmentHead], encoder=c.student(final_norm=True, init="xavier"), teacher=c.teacher(str(teacher_file)),
            masking=MaskingConfig(video_ratio=c.mask_ratio),
            optimizer=OptimizerConfig(lr=c.pretrain_lr * 256 / c.pretrain_batch_size, min_lr=0.0,
                                      warmup_epochs=min(1, c.pretrain_epochs), betas=(0.9, 0.95)),
            data_info=DataInfo(clips_per_step=c.pretrain_batch_size))
        unlabelled = Clips(clips, torch.zeros(len(clips), dtype=torch.long), c.num_frames, True, seed)
        _trainer(out, c.pretrain_epochs, progress).fit(pretrain, _loader(unlabelled, c.pretrain_batch_size, True))
        student_file = out / "stage1_student.pt"
        torch.save({"model": {f"encoder.{k}": v for k, v in pretrain.encoder.state_dict().items()}}, student_file)
        lap("pretrain_s")

        pretrained_accuracy, finetuned = _finetune(student_file, data, c, out, seed, progress)
        save_native(classifier_from_module(finetuned), out / "classifier.pt", "umt_b16",
                    labels=class_names(c.synthetic))
        lap("finetune_pretrained_s")
        result = scratch.result()
        scratch_accuracy = result["accuracy"]
        timings["finetune_scratch_s"], cpu["finetune_scratch_s"] = round(result["wall_s"], 1), round(result["cpu_s"], 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    cpu["total_s"] = round(sum(cpu.values()), 1)

    metrics = {
        "pretrained_accuracy": pretrained_accuracy,
        "scratch_accuracy": scratch_accuracy,
        "teacher": (f"open_clip CLIP trained here on single frames vs frame captions (size, visibility, position "
                    f"of the shape): ViT image tower width {c.teacher_width}, {c.teacher_layers} layers, patch "
                    f"{c.patch_size}, output {c.teacher_dim}; text tower width {c.text_width}, {c.text_layers} "
                    f"layers over {len(tokenizer.words)} words"),
        "classes": class_names(c.synthetic),
        "test_clips": len(test_labels),
        "labelled_clips": c.labelled_clips,
        "unlabelled_clips": c.unlabelled_clips,
        "seed": seed,
        "config": dataclasses.asdict(c),
        "timings": timings,
        "cpu_timings": cpu,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(format_table(metrics))
    return metrics


def format_table(metrics: dict[str, Any]) -> str:
    """The demo's result table."""
    rows = [("UMT stage 1 with the teacher, then fine-tuned", metrics["pretrained_accuracy"]),
            ("the same fine-tuning from random init", metrics["scratch_accuracy"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'student':<{width}}  held-out accuracy", "-" * (width + 19)]
    lines += [f"{name:<{width}}  {value:17.3f}" for name, value in rows]
    lines.append(f"({metrics['test_clips']} test clips, {len(metrics['classes'])} classes, "
                 f"{metrics['labelled_clips']} labelled / {metrics['unlabelled_clips']} unlabelled clips; "
                 f"{metrics['timings']['total_s']:.0f} s)")
    return "\n".join(lines)
