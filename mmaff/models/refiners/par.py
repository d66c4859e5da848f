# Copyright (c) mmaff contributors. All rights reserved.
import numbers
from typing import Sequence

import torch
from torch import Tensor

from mmaff.ops.par import PAR_DILATIONS, par_refine
from mmaff.registry import MODELS
from .base_refiner import BaseRefiner


@MODELS.register_module()
class PAR(BaseRefiner):
    """Pixel-adaptive refinement (AFA, CVPR 2022) as a label refiner.

    :func:`mmaff.ops.par_refine` in plain PyTorch, batched, on the CPU or a
    GPU: the scores are propagated ``iterations`` times over rings of
    neighbours at several dilations, weighted by colour and position
    affinities. The image is first normalised per channel (``mean`` /
    ``std``, 0-255 units, as the network input). With ``renormalize``
    (default) the result is divided by ``(1 + w2) ** iterations``, the
    growth of the scores' total per step (every pixel's affinities sum to
    ``1 + w2``): the refined scores keep the input's scale (constant scores
    stay as they are), so thresholds on them keep their meaning; the argmax
    is the same either way. The scores can mean anything additive
    (probabilities, CAMs with a background channel).

    Args:
        dilations (Sequence[int]): Ring dilations in pixels. Defaults to
            ``(1, 2, 4, 8, 12, 24)`` (AFA).
        iterations (int): Propagation steps. Defaults to 10 (AFA's VOC
            setting; 15 for COCO).
        w1 (float): Temperature of both kernels. Defaults to 0.3.
        w2 (float): Weight of the position kernel. Defaults to 0.01.
        mean (Sequence[float]): Per-channel RGB mean subtracted from the
            image. Defaults to ImageNet's (123.675, 116.28, 103.53).
        std (Sequence[float]): Per-channel RGB std. Defaults to ImageNet's
            (58.395, 57.12, 57.375).
        renormalize (bool): Divide by ``(1 + w2) ** iterations``. Defaults
            to True.
        device (str): Where to compute: 'cpu', 'cuda' or 'cuda:N' (the
            scores come back to their own device). Defaults to 'cpu'.
    """

    def __init__(self,
                 dilations: Sequence[int] = PAR_DILATIONS,
                 iterations: int = 10,
                 w1: float = 0.3,
                 w2: float = 0.01,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 renormalize: bool = True,
                 device: str = 'cpu') -> None:
        # validates the kernel settings once (on a 1 x 1 image)
        par_refine(
            torch.zeros(1, 3, 1, 1),
            torch.zeros(1, 1, 1, 1),
            dilations=list(dilations)
            if isinstance(dilations, (list, tuple)) else dilations,
            iterations=iterations,
            w1=w1,
            w2=w2)
        for name, values in (('mean', mean), ('std', std)):
            if not isinstance(values, (list, tuple)) or len(values) != 3 or \
                    any(isinstance(v, bool) or not isinstance(
                        v, numbers.Real) for v in values):
                raise ValueError(f'PAR: {name} must be 3 numbers (RGB), got '
                                 f'{values!r}')
        if any(not v > 0 for v in std):
            raise ValueError(f'PAR: std must be > 0, got {std!r}')
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f'PAR: bad device {device!r}: {err}') from err
        if dev.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'PAR: device {device!r} asked for, but CUDA is '
                             "not available here (use device='cpu')")
        if dev.type not in ('cpu', 'cuda'):
            raise ValueError("PAR: device must be 'cpu' or 'cuda[:N]', got "
                             f'{device!r}')
        self.dilations = tuple(int(d) for d in dilations)
        self.iterations = int(iterations)
        self.w1 = float(w1)
        self.w2 = float(w2)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.renormalize = bool(renormalize)
        self.device = dev

    @property
    def options(self) -> dict:
        return dict(
            dilations=self.dilations,
            iterations=self.iterations,
            w1=self.w1,
            w2=self.w2,
            mean=self.mean,
            std=self.std,
            renormalize=self.renormalize,
            device=str(self.device))

    def refine(self, images: Tensor, scores: Tensor) -> Tensor:
        """The whole batch at once on :attr:`device`."""
        image = images.to(self.device).permute(0, 3, 1, 2).float()
        mean = image.new_tensor(self.mean).view(1, 3, 1, 1)
        std = image.new_tensor(self.std).view(1, 3, 1, 1)
        out = par_refine((image - mean) / std,
                         scores.to(self.device),
                         dilations=self.dilations,
                         iterations=self.iterations,
                         w1=self.w1,
                         w2=self.w2)
        if self.renormalize:
            out = out / (1 + self.w2)**self.iterations
        return out
