# Copyright (c) mmaff contributors. All rights reserved.
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import Tensor

from mmaff.ops.cam import aggregate_cams, cams_to_label, normalize_cams
from mmaff.registry import MODELS
from ..heads.cam_head import image_label_targets
from .head_segmentor import HeadSegmentor


@MODELS.register_module()
class CAMClassifier(HeadSegmentor):
    """Stage 1: a classifier trained on image-level labels that predicts CAMs.

    Training: backbone -> :class:`CAMHead` with the multi-label soft-margin
    loss. Testing (``mode='predict'``): the CAMs of every scale in
    ``test_cfg.scales``, each also on the flipped image when
    ``test_cfg.flip``, are resized to the original image size, summed,
    absent classes zeroed and each class map divided by its maximum
    (:mod:`mmaff.ops.cam`). Each returned :class:`SegDataSample` holds

    * ``pred_cams`` (PixelData, C x H x W): the normalised CAMs, zero for the
      classes absent from the image-level labels;
    * ``pred_sem_seg``: argmax of [``bg_threshold``, CAMs] (label ids),

    so ``tools/test.py`` evaluates (``CAMMetric``), visualises and exports
    (``CAMExportHook``) them like any mmseg prediction.

    Args:
        backbone (dict): Backbone config (stride 8, e.g. ResNet38d).
        cam_head (dict): :class:`CAMHead` config.
        neck (dict, optional): Neck config.
        train_cfg (dict, optional): Unused.
        test_cfg (dict, optional): ``scales`` (default (1.0, 0.5, 1.5, 2.0)),
            ``flip`` (True), ``bg_threshold`` (0.2).
        data_preprocessor (dict, optional): e.g. ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    head_name = 'cam_head'

    def __init__(self,
                 backbone: dict,
                 cam_head: dict,
                 neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, cam_head, neck, train_cfg, test_cfg,
                         data_preprocessor, init_cfg)
        self.num_classes = self.cam_head.num_classes
        test_cfg = dict(test_cfg or {})
        self.scales = tuple(test_cfg.get('scales', (1.0, 0.5, 1.5, 2.0)))
        self.flip = bool(test_cfg.get('flip', True))
        self.bg_threshold = float(test_cfg.get('bg_threshold', 0.2))
        if not self.scales:
            raise ValueError('test_cfg.scales must name at least one scale')
        self.test_cfg = test_cfg

    def encode_decode(self, inputs: Tensor,
                      batch_data_samples: Optional[List] = None) -> Tensor:
        """Single-scale CAMs at the feature stride, (B, C, h, w)."""
        return self.cam_head.cam(self.extract_feat(inputs))

    def _forward(self,
                 inputs: Tensor,
                 data_samples: Optional[List] = None) -> Tensor:
        """Image-level logits (B, C)."""
        return self.cam_head(self.extract_feat(inputs))

    def multiscale_cams(self, img: Tensor, size: Sequence[int]) -> Tensor:
        """Summed, un-normalised CAMs of one image over scales and flips.

        Args:
            img (Tensor): (1, 3, h, w) normalised image without padding.
            size (Sequence[int]): Output (H, W).

        Returns:
            Tensor: (C, H, W).
        """
        cams, flips = [], []
        for scale in self.scales:
            x = img if scale == 1.0 else F.interpolate(
                img, scale_factor=scale, mode='bilinear',
                align_corners=False)
            if self.flip:
                x = torch.cat([x, x.flip(-1)])
            cam = self.encode_decode(x)
            cams.append(cam[0])
            flips.append(False)
            if self.flip:
                cams.append(cam[1])
                flips.append(True)
        return aggregate_cams(cams, flips, tuple(size))

    def predict(self, inputs: Tensor,
                data_samples: Optional[List] = None) -> List[SegDataSample]:
        """Multi-scale + flip normalised CAMs and their segmentation.

        Args:
            inputs (Tensor): (B, 3, H, W), possibly padded.
            data_samples (list[SegDataSample]): With metainfo ``img_shape``,
                ``ori_shape`` and ``img_labels``.

        Returns:
            list[SegDataSample]: With ``pred_cams`` and ``pred_sem_seg``.
        """
        if data_samples is None:
            raise ValueError('CAM prediction needs data samples with the '
                             'image-level labels (img_labels)')
        present = image_label_targets(data_samples, self.num_classes,
                                      inputs.device)
        for i, sample in enumerate(data_samples):
            h, w = sample.metainfo.get('img_shape', inputs.shape[-2:])
            ori_shape = sample.metainfo.get('ori_shape', (h, w))
            cams = self.multiscale_cams(inputs[i:i + 1, :, :h, :w],
                                        ori_shape[:2])
            cams = normalize_cams(cams, present[i])
            labels = [int(c) for c in sample.metainfo['img_labels']]
            pred = cams_to_label(cams[[c - 1 for c in labels]], labels,
                                 self.bg_threshold)
            sample.set_data(
                dict(
                    pred_cams=PixelData(data=cams),
                    pred_sem_seg=PixelData(data=pred[None])))
        return data_samples
