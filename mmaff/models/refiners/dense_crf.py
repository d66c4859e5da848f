# Copyright (c) mmaff contributors. All rights reserved.
import numbers
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from mmaff.ops import crf as crf_ops
from mmaff.registry import MODELS
from .base_refiner import BaseRefiner


@MODELS.register_module()
class DenseCRF(BaseRefiner):
    """The fully connected CRF (Kraehenbuehl & Koltun) as a label refiner.

    Wraps :func:`mmaff.ops.dense_crf` (``pydensecrf``, CPU, one image at a
    time): the scores are read as probabilities (unary ``-log(clip(p,
    1e-5, 1))``, not renormalised), the result is the mean-field marginals
    (summing to 1 per pixel). The defaults are the AffinityNet reference's,
    which assume ~500 px photos (VOC).

    The bilateral kernel's spatial extent is in pixels, so on images of
    another size it reaches a different fraction of the object. With
    ``reference_size`` set, ``bilateral_sxy`` is the value for an image
    whose long side is ``reference_size`` and is scaled with each image:
    ``bilateral_sxy * max(H, W) / reference_size`` (the rule of
    ``docs/method.md``: 80 x side / 500). The Gaussian smoothness kernel
    (``gauss_sxy`` 3, a few-pixel neighbourhood) and the colour range are
    not scaled. None (the default, the reference's behaviour) uses
    ``bilateral_sxy`` as it is.

    Args:
        iterations (int): Mean-field iterations. Defaults to 10.
        gauss_sxy (float): Gaussian kernel's spatial std. Defaults to 3.
        gauss_compat (float): Gaussian kernel's Potts weight. Defaults to 3.
        bilateral_sxy (float): Bilateral kernel's spatial std (pixels, or
            pixels at ``reference_size``). Defaults to 80.
        bilateral_srgb (float): Bilateral kernel's colour std (0-255).
            Defaults to 13.
        bilateral_compat (float): Bilateral kernel's Potts weight. Defaults
            to 10.
        reference_size (int, optional): Long image side that
            ``bilateral_sxy`` is meant for (e.g. 500); None: no scaling.

    Raises:
        ImportError: ``pydensecrf`` cannot be imported (the message names
            the PAR refiner as the alternative).
    """

    def __init__(self,
                 iterations: int = 10,
                 gauss_sxy: float = 3,
                 gauss_compat: float = 3,
                 bilateral_sxy: float = 80,
                 bilateral_srgb: float = 13,
                 bilateral_compat: float = 10,
                 reference_size: Optional[int] = None) -> None:
        crf_ops.require_pydensecrf()
        if isinstance(iterations, bool) or not isinstance(
                iterations, numbers.Integral) or iterations < 0:
            raise ValueError('DenseCRF: iterations must be an integer >= 0, '
                             f'got {iterations!r}')
        values = dict(
            gauss_sxy=gauss_sxy,
            gauss_compat=gauss_compat,
            bilateral_sxy=bilateral_sxy,
            bilateral_srgb=bilateral_srgb,
            bilateral_compat=bilateral_compat)
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(
                    value, numbers.Real) or not np.isfinite(value) or \
                    value < 0 or (value == 0 and name.endswith('sxy')):
                raise ValueError(f'DenseCRF: {name} must be a finite number '
                                 f'{"> 0" if name.endswith("sxy") else ">= 0"}'
                                 f', got {value!r}')
        if reference_size is not None and (
                isinstance(reference_size, bool)
                or not isinstance(reference_size, numbers.Real)
                or not reference_size > 0):
            raise ValueError('DenseCRF: reference_size must be a number > 0 '
                             f'or None, got {reference_size!r}')
        self.iterations = int(iterations)
        self.crf_kwargs = values
        self.reference_size = reference_size

    @property
    def options(self) -> dict:
        return dict(
            iterations=self.iterations,
            **self.crf_kwargs,
            reference_size=self.reference_size)

    def crf_options(self, height: int, width: int) -> dict:
        """The :func:`mmaff.ops.dense_crf` keyword arguments for an image of
        this size (``bilateral_sxy`` scaled when ``reference_size`` is set).
        """
        kwargs = dict(self.crf_kwargs, iterations=self.iterations)
        if self.reference_size is not None:
            kwargs['bilateral_sxy'] = self.crf_kwargs['bilateral_sxy'] * max(
                height, width) / self.reference_size
        return kwargs

    def refine(self, images: Tensor, scores: Tensor) -> Tensor:
        """Each image's marginals (:func:`mmaff.ops.dense_crf`)."""
        height, width = images.shape[1:3]
        kwargs = self.crf_options(height, width)
        return torch.stack([
            torch.from_numpy(
                crf_ops.dense_crf(image.numpy(), probs, **kwargs))
            for image, probs in zip(images, scores)
        ])
