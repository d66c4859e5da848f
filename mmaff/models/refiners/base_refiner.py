# Copyright (c) mmaff contributors. All rights reserved.
"""The interface every label refiner follows, and how configs select one."""
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mmaff.ops.crf import crf_options
from mmaff.registry import MODELS

ArrayLike = Union[np.ndarray, Tensor]


class BaseRefiner:
    """Refine per-pixel class scores on their image (one image or a batch).

    Call a refiner with ``(image, scores)``:

    * ``image``: uint8 RGB, (H, W, 3) or a batch (B, H, W, 3), numpy array
      or tensor;
    * ``scores``: floating-point class scores, (K, H, W) or (B, K, H, W),
      numpy array or tensor, non-negative and finite (what they mean, e.g.
      probabilities, is each refiner's: see its docstring).

    It returns the refined scores, same shape; a numpy array (float32) for
    numpy scores, a tensor on the scores' device for tensor scores. Labels
    are their argmax. Subclasses implement :meth:`refine` on a batch and
    list their settings in :attr:`options` (which defines equality and the
    repr); they must stay picklable (the export hooks send them to their
    worker processes).
    """

    #: Where the refiner computes (hooks refine in the main process unless
    #: it is the CPU).
    device: torch.device = torch.device('cpu')

    @property
    def options(self) -> dict:
        """The constructor's arguments (what the config sets)."""
        raise NotImplementedError

    def refine(self, images: Tensor, scores: Tensor) -> Tensor:
        """Refine a batch.

        Args:
            images (Tensor): (B, H, W, 3) uint8 RGB on the CPU.
            scores (Tensor): (B, K, H, W) float32 scores on the CPU.

        Returns:
            Tensor: (B, K, H, W) refined scores (any device, float dtype).
        """
        raise NotImplementedError

    def __call__(self, image: ArrayLike, scores: ArrayLike) -> ArrayLike:
        name = type(self).__name__
        images, batched = self._images(image, name)
        as_numpy = not isinstance(scores, Tensor)
        if as_numpy:
            arr = np.asarray(scores)
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f'{name}: scores must be floating point, '
                                f'got dtype {arr.dtype}')
            scores_t = torch.from_numpy(np.ascontiguousarray(arr))
            device = torch.device('cpu')
        else:
            if not scores.is_floating_point():
                raise TypeError(f'{name}: scores must be floating point, '
                                f'got dtype {scores.dtype}')
            scores_t, device = scores.detach(), scores.device
        expect = 4 if batched else 3
        if scores_t.dim() != expect:
            layout = '(B, K, H, W)' if batched else '(K, H, W)'
            raise ValueError(
                f'{name}: scores must be {layout} for an image of shape '
                f'{tuple(image.shape)}, got shape {tuple(scores_t.shape)}')
        if not batched:
            scores_t = scores_t[None]
        if scores_t.shape[0] != images.shape[0] or tuple(
                scores_t.shape[-2:]) != tuple(images.shape[1:3]):
            raise ValueError(
                f'{name}: scores {tuple(scores_t.shape)} do not match the '
                f'images {tuple(images.shape)} (batch and H x W)')
        if scores_t.shape[1] < 1:
            raise ValueError(f'{name}: scores need at least one channel')
        scores_t = scores_t.float().cpu()
        if not bool(torch.isfinite(scores_t).all()):
            raise ValueError(f'{name}: scores have NaN or inf values')
        out = self.refine(images, scores_t)
        if tuple(out.shape) != tuple(scores_t.shape):
            raise RuntimeError(f'{name}: refine returned shape '
                               f'{tuple(out.shape)} for scores of shape '
                               f'{tuple(scores_t.shape)}')
        if not batched:
            out = out[0]
        if as_numpy:
            return out.detach().float().cpu().numpy()
        return out.to(device=device, dtype=scores.dtype)

    @staticmethod
    def _images(image: ArrayLike, name: str) -> Tuple[Tensor, bool]:
        """(B, H, W, 3) uint8 CPU tensor of one image or a batch."""
        if isinstance(image, Tensor):
            image = image.detach().cpu()
            dtype_ok = image.dtype == torch.uint8
        elif isinstance(image, np.ndarray):
            dtype_ok = image.dtype == np.uint8
        else:
            raise TypeError(f'{name}: image must be a numpy array or a '
                            f'tensor, got {type(image).__name__}')
        if image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise ValueError(f'{name}: image must be (H, W, 3) or (B, H, W, '
                             f'3) RGB, got shape {tuple(image.shape)}')
        if not dtype_ok:
            raise TypeError(f'{name}: image must be uint8 RGB, got dtype '
                            f'{image.dtype}')
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        batched = image.ndim == 4
        images = image if batched else image[None]
        if images.shape[1] < 1 or images.shape[2] < 1:
            raise ValueError(f'{name}: empty image of shape '
                             f'{tuple(image.shape)}')
        return images, batched

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.options == self.options

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in self.options.items())
        return f'{type(self).__name__}({args})'


def build_refiner(refiner: Union[None, dict, BaseRefiner] = None,
                  crf: Optional[dict] = None,
                  owner: str = 'refiner') -> BaseRefiner:
    """The refiner a config selects.

    Args:
        refiner (dict | BaseRefiner, optional): A config dict
            (``dict(type='DenseCRF', ...)``, ``dict(type='PAR', ...)``) or a
            built refiner. None: the dense CRF with the reference's values
            (the paper's configs).
        crf (dict, optional): Deprecated: the keyword arguments of
            :func:`mmaff.ops.dense_crf` that configs passed as ``crf=``
            before refiners were components; means ``dict(type='DenseCRF',
            **crf)`` (with a DeprecationWarning). Not together with
            ``refiner``.
        owner (str): Named in errors and warnings (e.g. the hook).

    Returns:
        BaseRefiner: The refiner.

    Raises:
        ValueError: Both given, unknown options, or a type that is not a
            refiner.
    """
    if crf is not None:
        if refiner is not None:
            raise ValueError(f'{owner}: give refiner=dict(type=...) or the '
                             'deprecated crf=dict(...), not both')
        warnings.warn(
            f"{owner}: crf=dict(...) is deprecated; use refiner=dict("
            "type='DenseCRF', ...) (or type='PAR')", DeprecationWarning,
            stacklevel=3)
        refiner = dict(type='DenseCRF', **crf_options(crf, owner))
    if refiner is None:
        refiner = dict(type='DenseCRF')
    if isinstance(refiner, BaseRefiner):
        return refiner
    if not isinstance(refiner, dict) or 'type' not in refiner:
        raise ValueError(f'{owner}: refiner must be a dict with a type '
                         "(e.g. dict(type='DenseCRF') or dict(type='PAR')), "
                         f'got {refiner!r}')
    refiner = dict(refiner)
    cls = MODELS.get(refiner['type']) if isinstance(refiner['type'],
                                                    str) else refiner['type']
    if not (isinstance(cls, type) and issubclass(cls, BaseRefiner)):
        raise ValueError(f"{owner}: refiner type {refiner['type']!r} is not "
                         'a label refiner (DenseCRF, PAR or another '
                         'BaseRefiner registered in MODELS)')
    try:
        built = MODELS.build(refiner)
    except TypeError as err:
        raise ValueError(f'{owner}: bad refiner {refiner}: {err}') from err
    return built
