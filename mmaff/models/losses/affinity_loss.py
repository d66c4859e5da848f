# Copyright (c) mmaff contributors. All rights reserved.
"""AffinityNet's pair loss (stage 3, see ``docs/method.md``)."""
from typing import Dict, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from mmaff.registry import MODELS


@MODELS.register_module()
class AffinityLoss(nn.Module):
    """Balanced cross-entropy over labelled pixel pairs.

    ``L = L_bg+ / 4 + L_fg+ / 4 + L_neg / 2`` with

    * ``L_bg+ = sum_{bg-positive pairs} -log(a + eps) / (count + eps)``,
    * ``L_fg+`` the same over foreground-positive pairs,
    * ``L_neg = sum_{negative pairs} -log(1 - a + eps) / (count + eps)``,

    ``eps = 1e-5``; sums and counts run over the whole batch, so a batch
    without pairs of one kind gets 0 for that term.

    Args:
        eps (float): The epsilon inside the logs and the counts.
            Defaults to 1e-5.
        loss_weight (float): Weight of the total. Defaults to 1.0.
        loss_name (str): Name of the loss item; it must start with ``loss_``
            to be back-propagated by mmseg's models. Defaults to
            'loss_aff'.
    """

    def __init__(self,
                 eps: float = 1e-5,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_aff') -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f'AffinityLoss: eps must be > 0, got {eps}')
        self.eps = eps
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def _check(self, affinity: Tensor, masks: Dict[str, Tensor]) -> None:
        if not isinstance(affinity, Tensor) or \
                not affinity.is_floating_point():
            raise TypeError('AffinityLoss: affinity must be a floating point '
                            'tensor')
        for name, mask in masks.items():
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                raise TypeError(f'AffinityLoss: {name} must be a bool '
                                'tensor')
            if mask.shape != affinity.shape:
                raise ValueError(
                    f'AffinityLoss: {name} {tuple(mask.shape)} does not match '
                    f'affinity {tuple(affinity.shape)}')

    def _mean(self, nll: Tensor, mask: Tensor) -> Tensor:
        count = mask.sum().to(nll.dtype)
        return torch.where(mask, nll, nll.new_zeros(())).sum() / (
            count + self.eps)

    def forward(
        self,
        affinity: Tensor,
        bg_pos: Tensor,
        fg_pos: Tensor,
        neg: Tensor,
        return_parts: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
        """Compute the loss.

        Args:
            affinity (Tensor): Pair affinities in [0, 1], e.g. (B, P, h, w)
                from :func:`mmaff.ops.affinity_from_features`.
            bg_pos (Tensor): Bool mask of background-positive pairs, same
                shape (see :func:`mmaff.ops.affinity_labels`).
            fg_pos (Tensor): Bool mask of foreground-positive pairs.
            neg (Tensor): Bool mask of negative pairs.
            return_parts (bool): Also return the three unweighted terms,
                e.g. for logging. Defaults to False.

        Returns:
            Tensor | tuple[Tensor, dict[str, Tensor]]: The weighted scalar
            loss; with ``return_parts``, also a dict with the terms
            ``'bg_pos'`` (L_bg+), ``'fg_pos'`` (L_fg+) and ``'neg'``
            (L_neg).
        """
        self._check(affinity, dict(bg_pos=bg_pos, fg_pos=fg_pos, neg=neg))
        pos_nll = -torch.log(affinity + self.eps)
        neg_nll = -torch.log(1 - affinity + self.eps)
        parts = dict(
            bg_pos=self._mean(pos_nll, bg_pos),
            fg_pos=self._mean(pos_nll, fg_pos),
            neg=self._mean(neg_nll, neg))
        loss = self.loss_weight * (
            parts['bg_pos'] / 4 + parts['fg_pos'] / 4 + parts['neg'] / 2)
        if return_parts:
            return loss, parts
        return loss

    @property
    def loss_name(self) -> str:
        """str: The name of this loss item (mmseg's loss convention)."""
        return self._loss_name
