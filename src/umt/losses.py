"""Training losses of UMT: unmasked-token alignment (UTA)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def uta_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Unmasked-token alignment loss (SPEC.md §1.7, §3.5 step 5): mean over (K, B, N) of ``2 - 2*cos``.

    Both inputs are L2-normalised over D here (a no-op for already normalised ones) and the loss is
    computed in float32.

    Args:
        student: aligned student tokens ``[K, B, N, D]``.
        teacher: teacher features at the same visible positions ``[K, B, N, D]``.

    Returns:
        scalar float32 tensor in [0, 4].
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {list(student.shape)} and teacher {list(teacher.shape)} shapes differ")
    cosine = (F.normalize(student.float(), dim=-1) * F.normalize(teacher.float(), dim=-1)).sum(-1)
    return (2 - 2 * cosine).mean()
