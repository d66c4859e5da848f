# Copyright (c) mmaff contributors. All rights reserved.
"""The project's one fully connected CRF (Kraehenbuehl & Koltun, 2011).

Used by stage 2 (refining the low/high-alpha background + CAM stacks into
confident regions) and stage 4 (the optional CAM + RW + dCRF step). Wraps
``pydensecrf`` (pip package ``pydensecrf2``): a Gaussian smoothness kernel
and a bilateral appearance kernel with Potts compatibilities, mean-field
inference on the original uint8 RGB image.

``pydensecrf`` is imported when the CRF first runs
(:func:`require_pydensecrf`), so everything else in mmaff works without it;
where it cannot be installed, the pixel-adaptive refiner
(``refiner=dict(type='PAR')``, plain PyTorch) replaces the CRF.
"""
import inspect
from typing import Optional, Union

import numpy as np
import torch

#: Lower clip applied to the probabilities before the log (the reference's).
PROB_CLIP = 1e-5


def require_pydensecrf():
    """Import ``pydensecrf.densecrf``, with an error that says what to do.

    Returns:
        module: ``pydensecrf.densecrf``.

    Raises:
        ImportError: ``pydensecrf`` cannot be imported; the message names
            the package to install and the PAR refiner as the alternative.
    """
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise ImportError(
            'the dense CRF needs pydensecrf, which cannot be imported '
            f'({type(err).__name__}: {err}). Install it (pip install '
            "pydensecrf2), or refine with the pixel-adaptive refiner, "
            "which needs nothing beyond PyTorch: refiner=dict(type='PAR') "
            'in the hook / API instead of the DenseCRF') from err
    return dcrf


def crf_options(crf: Optional[dict], owner: str) -> dict:
    """Check the keyword arguments of :func:`dense_crf` a config sets.

    Args:
        crf (dict, optional): The options (None: the reference's).
        owner (str): Named in the error (e.g. the hook's name).

    Returns:
        dict: A copy of the options.

    Raises:
        ValueError: An option :func:`dense_crf` does not take.
    """
    crf = dict(crf or {})
    known = [
        name for name in inspect.signature(dense_crf).parameters
        if name not in ('image', 'probs')
    ]
    unknown = sorted(set(crf) - set(known))
    if unknown:
        raise ValueError(f'{owner}: unknown crf options {unknown}; '
                         f'dense_crf accepts {known}')
    return crf


def _probs_to_numpy(probs: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """Convert a probability stack to a float32 numpy array."""
    if isinstance(probs, torch.Tensor):
        if not (probs.is_floating_point()):
            raise TypeError('dense_crf: probs must be a floating-point '
                            f'tensor, got dtype {probs.dtype}')
        return probs.detach().cpu().float().numpy()
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError('dense_crf: probs must be a floating-point array, '
                        f'got dtype {probs.dtype}')
    return probs.astype(np.float32, copy=False)


def dense_crf(image: np.ndarray,
              probs: Union[np.ndarray, torch.Tensor],
              iterations: int = 10,
              gauss_sxy: float = 3,
              gauss_compat: float = 3,
              bilateral_sxy: float = 80,
              bilateral_srgb: float = 13,
              bilateral_compat: float = 10) -> np.ndarray:
    """Refine per-pixel class scores with a fully connected CRF.

    The unary energy is ``-log(clip(p, 1e-5, 1))`` of the given scores,
    which are **not** renormalised first, as in the reference: in stage 2
    the background channel is an amplified/shrunk score ``(1 - max CAM) **
    alpha`` next to CAMs in [0, 1], and its size relative to the CAMs is
    what makes it strong or weak. (Renormalising would add a per-pixel
    constant to the unary, which mean-field ignores, so it would matter
    only through the clipping.) The defaults are those of the AffinityNet
    reference (Gaussian kernel sxy=3, compat=3; bilateral kernel sxy=80,
    srgb=13, compat=10; 10 mean-field iterations).

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB image (copied when it is
            not C-contiguous or is read-only, e.g. a memory map or an
            array of an image reader's cache: pydensecrf's binding takes
            writeable buffers only).
        probs (np.ndarray | torch.Tensor): (K, H, W) floating-point scores
            of K >= 1 labels, finite; values are clipped to [1e-5, 1].
        iterations (int): Mean-field iterations (>= 0). Defaults to 10.
        gauss_sxy (float): Spatial std (pixels) of the Gaussian kernel.
            Defaults to 3.
        gauss_compat (float): Potts weight of the Gaussian kernel.
            Defaults to 3.
        bilateral_sxy (float): Spatial std (pixels) of the bilateral
            kernel. Defaults to 80.
        bilateral_srgb (float): Colour std (0-255 units) of the bilateral
            kernel. Defaults to 13.
        bilateral_compat (float): Potts weight of the bilateral kernel.
            Defaults to 10.

    Returns:
        np.ndarray: (K, H, W) float32 marginals, summing to 1 over K at
        each pixel.

    Raises:
        ImportError: ``pydensecrf`` is missing (see
            :func:`require_pydensecrf`).
    """
    if not isinstance(image, np.ndarray):
        raise TypeError('dense_crf: image must be a numpy array, got '
                        f'{type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError('dense_crf: image must be (H, W, 3) RGB, got shape '
                         f'{image.shape}')
    if image.dtype != np.uint8:
        raise TypeError('dense_crf: image must be uint8 RGB, got dtype '
                        f'{image.dtype}')
    probs = _probs_to_numpy(probs)
    if probs.ndim != 3:
        raise ValueError('dense_crf: probs must be (K, H, W), got shape '
                         f'{probs.shape}')
    num_labels, height, width = probs.shape
    if num_labels < 1:
        raise ValueError('dense_crf: probs must have at least one label '
                         'channel (K >= 1), got K = 0')
    if (height, width) != image.shape[:2]:
        raise ValueError(f'dense_crf: probs size {(height, width)} does not '
                         f'match the image size {image.shape[:2]}')
    if height == 0 or width == 0:
        raise ValueError(f'dense_crf: empty image of size {image.shape[:2]}')
    if not np.isfinite(probs).all():
        raise ValueError('dense_crf: probs contain non-finite values')
    if int(iterations) != iterations or iterations < 0:
        raise ValueError('dense_crf: iterations must be a non-negative '
                         f'integer, got {iterations}')

    dcrf = require_pydensecrf()
    unary = -np.log(np.clip(probs, PROB_CLIP, 1.0))
    unary = np.ascontiguousarray(
        unary.reshape(num_labels, -1), dtype=np.float32)
    crf = dcrf.DenseCRF2D(width, height, num_labels)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy,
        srgb=bilateral_srgb,
        rgbim=image if image.flags.c_contiguous and image.flags.writeable
        else np.array(image, order='C'),
        compat=bilateral_compat)
    q = np.asarray(crf.inference(int(iterations)), dtype=np.float32)
    return q.reshape(num_labels, height, width)
