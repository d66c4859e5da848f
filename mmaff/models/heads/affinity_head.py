# Copyright (c) mmaff contributors. All rights reserved.
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmaff.ops import affinity_from_features, affinity_labels
from mmaff.registry import MODELS


def grid_labels(label: Tensor, grid: Tuple[int, int], stride: int = 8,
                ignore_index: int = 255) -> Tensor:
    """Sample a full-resolution label map at the centres of the grid cells.

    Args:
        label (Tensor): (B, H, W) label ids.
        grid (tuple[int, int]): (h, w) of the feature grid.
        stride (int): Feature stride. Defaults to 8.
        ignore_index (int): Fill of cells beyond the map. Defaults to 255.

    Returns:
        Tensor: (B, h, w) label ids.
    """
    h, w = grid
    pad_h = max(h * stride - label.shape[-2], 0)
    pad_w = max(w * stride - label.shape[-1], 0)
    if pad_h or pad_w:
        label = F.pad(label, (0, pad_w, 0, pad_h), value=ignore_index)
    c = stride // 2
    return label[:, c::stride, c::stride][:, :h, :w]


@MODELS.register_module()
class AffinityHead(BaseModule):
    """AffinityNet's head: affinity features from three stride-8 taps.

    Each tap goes through a 1x1 conv (no bias) + ELU, the results are
    concatenated and a 1x1 conv (no bias) + ELU gives the affinity feature
    map f; ``a_ij = exp(-mean_k |f_k(i) - f_k(j)|)`` for pixel pairs within
    ``radius`` (:func:`mmaff.ops.affinity_from_features`), trained with
    :class:`AffinityLoss` on labels from the confident-region maps.

    Args:
        in_channels (Sequence[int]): Channels of the taps. Defaults to the
            ResNet-38 taps (512, 1024, 4096).
        channels (Sequence[int]): Reduced channels per tap. Defaults to
            (64, 128, 256).
        out_channels (int): Channels of f. Defaults to 448.
        radius (int): Pair radius on the grid. Defaults to 5.
        stride (int): Feature stride. Defaults to 8.
        loss (dict): Loss config. Defaults to ``AffinityLoss``.
        ignore_index (int): Unsure label id. Defaults to 255.
        init_cfg (list[dict]): Defaults to Kaiming for the reductions and
            Xavier-uniform (gain 4) for the fusion, as the reference.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (512, 1024, 4096),
                 channels: Sequence[int] = (64, 128, 256),
                 out_channels: int = 448,
                 radius: int = 5,
                 stride: int = 8,
                 loss: dict = dict(type='AffinityLoss'),
                 ignore_index: int = 255,
                 init_cfg=(dict(type='Kaiming', layer='Conv2d',
                                mode='fan_in'),
                           dict(
                               type='Xavier',
                               gain=4,
                               distribution='uniform',
                               override=dict(name='fuse')))) -> None:
        super().__init__(init_cfg=list(init_cfg) if init_cfg else None)
        if len(in_channels) != len(channels):
            raise ValueError(f'{len(in_channels)} input taps but '
                             f'{len(channels)} reduction widths')
        self.radius = radius
        self.stride = stride
        self.ignore_index = ignore_index
        self.reduce = nn.ModuleList(
            nn.Conv2d(i, c, 1, bias=False)
            for i, c in zip(in_channels, channels))
        self.fuse = nn.Conv2d(sum(channels), out_channels, 1, bias=False)
        self.loss_aff = MODELS.build(loss)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Affinity features f (B, out_channels, h, w).

        Args:
            feats (Sequence[Tensor]): The taps, all at the same stride.
        """
        if len(feats) != len(self.reduce):
            raise ValueError(f'expected {len(self.reduce)} feature taps, '
                             f'got {len(feats)}')
        size = feats[-1].shape[-2:]
        xs = []
        for conv, x in zip(self.reduce, feats):
            if x.shape[-2:] != size:
                raise ValueError('all taps must share the stride-8 grid, got '
                                 f'{[tuple(f.shape[-2:]) for f in feats]}')
            xs.append(F.elu(conv(x)))
        return F.elu(self.fuse(torch.cat(xs, dim=1)))

    def affinity_from(self, f: Tensor) -> Tensor:
        """Pair affinities (B, P, h, w) of affinity features f, see
        :func:`mmaff.ops.affinity_from_features`."""
        return affinity_from_features(f, self.radius)

    def affinity(self, feats: Sequence[Tensor]) -> Tensor:
        """Pair affinities (B, P, h, w) from the backbone taps."""
        return self.affinity_from(self(feats))

    def loss(self, feats: Sequence[Tensor], data_samples: List) -> dict:
        """Affinity loss against the confident-region labels.

        Args:
            feats (Sequence[Tensor]): Backbone taps.
            data_samples (list): Samples with ``gt_sem_seg`` (the
                confident-region map, padded with 255).

        Returns:
            dict: ``loss_aff`` and the three unweighted terms for logging.
        """
        aff = self.affinity(feats)
        label = torch.stack(
            [s.gt_sem_seg.data[0] for s in data_samples]).long()
        grid = grid_labels(label, aff.shape[-2:], self.stride,
                           self.ignore_index)
        bg, fg, neg = affinity_labels(grid, self.radius, self.ignore_index)
        loss, parts = self.loss_aff(aff, bg, fg, neg, return_parts=True)
        out = {self.loss_aff.loss_name: loss}
        out.update({f'aff_{k}': v.detach() for k, v in parts.items()})
        return out
