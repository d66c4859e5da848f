# Copyright (c) mmaff contributors. All rights reserved.
from typing import List, Optional

import torch
from mmengine.structures import PixelData
from torch import Tensor

from mmaff.ops import propagate_cams, scores_to_label
from mmaff.registry import MODELS
from .head_segmentor import HeadSegmentor

#: The walk settings ``test_cfg`` may set (defaults: propagate_cams').
WALK_KEYS = ('alpha', 'beta', 'steps')


@MODELS.register_module()
class AffinityNet(HeadSegmentor):
    """Stage 3: AffinityNet, pixel-pair affinities from a stride-8 backbone.

    Training: backbone taps -> :class:`AffinityHead` -> ``AffinityLoss`` on
    the confident-region maps. Testing (``mode='predict'``): each returned
    sample holds ``pred_affinity`` (PixelData, P x h x w), the affinities of
    the image's own stride-8 grid (h = ceil(H / 8): the input is padded
    right/bottom, e.g. by ``SegDataPreProcessor(size_divisor=8)``). When the
    sample carries its CAMs (metainfo ``cams``, ``cam_labels``: the
    :class:`mmaff.datasets.transforms.LoadCAMs` transform), the model also
    walks them (stage 4, :func:`mmaff.ops.propagate_cams`) and returns
    ``seg_logits`` (the K + 1 propagated scores, background first, of the
    labels in metainfo ``score_labels``) and ``pred_sem_seg`` (their argmax
    as label ids), which mmseg's metrics score and ``--show-dir`` draws.

    Args:
        backbone (dict): Backbone config with stride-8 taps, e.g.
            ``ResNet38d(out_keys=('b4_act', 'b5_act', 'bn7'))``.
        aff_head (dict): :class:`AffinityHead` config.
        neck (dict, optional): Neck config.
        train_cfg (dict, optional): Unused.
        test_cfg (dict, optional): The walk's ``alpha`` (background power),
            ``beta`` (affinity power) and ``steps``; a key left out takes
            :func:`mmaff.ops.propagate_cams`' default (the paper's 16, 8,
            256). The pair radius and stride are the head's.
        data_preprocessor (dict, optional): e.g. ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    head_name = 'aff_head'

    def __init__(self,
                 backbone: dict,
                 aff_head: dict,
                 neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, aff_head, neck, train_cfg, test_cfg,
                         data_preprocessor, init_cfg)
        unknown = sorted(set(test_cfg or {}) - set(WALK_KEYS))
        if unknown:
            raise ValueError(f'AffinityNet: unknown test_cfg keys {unknown}; '
                             f'the walk takes {list(WALK_KEYS)}')
        for key, value in (test_cfg or {}).items():
            if isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not 0 < value < float('inf') \
                    or (key == 'steps' and not isinstance(value, int)):
                raise ValueError(f'AffinityNet: test_cfg.{key} must be a '
                                 f'finite number > 0'
                                 f'{" (an int)" if key == "steps" else ""}, '
                                 f'got {value!r}')
        self.walk = dict(test_cfg or {})

    def encode_decode(self, inputs: Tensor,
                      batch_data_samples: Optional[List] = None) -> Tensor:
        """Pair affinities (B, P, h, w) of the (padded) batch."""
        return self.aff_head.affinity(self.extract_feat(inputs))

    def _forward(self,
                 inputs: Tensor,
                 data_samples: Optional[List] = None) -> Tensor:
        """Affinity features f (B, K, h, w)."""
        return self.aff_head(self.extract_feat(inputs))

    def predict(self, inputs: Tensor,
                data_samples: Optional[List] = None) -> List:
        """Affinities of each image's own grid.

        Args:
            inputs (Tensor): (B, 3, H, W), padded right/bottom.
            data_samples (list[SegDataSample]): With ``img_shape``.

        Returns:
            list[SegDataSample]: With ``pred_affinity`` (P x h x w) and
            metainfo ``grid_shape``; for samples with ``cams`` also
            ``seg_logits``, ``pred_sem_seg`` and metainfo ``score_labels``.
        """
        from mmseg.structures import SegDataSample
        if data_samples is None:
            data_samples = [
                SegDataSample(metainfo=dict(img_shape=inputs.shape[-2:]))
                for _ in range(inputs.shape[0])
            ]
        feats = self._forward(inputs)
        stride = self.aff_head.stride
        for i, sample in enumerate(data_samples):
            h, w = sample.metainfo.get('img_shape', inputs.shape[-2:])[:2]
            gh, gw = -(-h // stride), -(-w // stride)
            if gh > feats.shape[-2] or gw > feats.shape[-1]:
                raise ValueError(
                    f'image {h}x{w} needs a {gh}x{gw} grid but the features '
                    f'are {tuple(feats.shape[-2:])}: is the backbone stride '
                    f'{stride}?')
            f = feats[i:i + 1, :, :gh, :gw]
            aff = self.aff_head.affinity_from(f)
            sample.set_metainfo(dict(grid_shape=(gh, gw)))
            sample.set_data(dict(pred_affinity=PixelData(data=aff[0])))
            if 'cams' in sample.metainfo:
                self._walk(sample, aff[0])
        return data_samples

    def _walk(self, sample, affinity: Tensor) -> None:
        """Stage 4 for one sample: its CAMs walked over its affinities."""
        meta = sample.metainfo
        cams = torch.as_tensor(meta['cams'], device=affinity.device)
        labels = [0] + [int(c) for c in meta['cam_labels']]
        try:
            scores = propagate_cams(
                cams,
                affinity,
                radius=self.aff_head.radius,
                stride=self.aff_head.stride,
                **self.walk)
        except ValueError as err:
            raise ValueError(f"random walk of {meta.get('img_path')}: "
                             f'{err}') from err
        sample.set_metainfo(dict(score_labels=labels))
        sample.set_data(
            dict(
                seg_logits=PixelData(data=scores),
                pred_sem_seg=PixelData(
                    data=scores_to_label(scores, labels[1:])[None])))
