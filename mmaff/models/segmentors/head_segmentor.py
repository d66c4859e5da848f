# Copyright (c) mmaff contributors. All rights reserved.
from typing import List, Optional, Tuple

from mmseg.models.segmentors.base import BaseSegmentor
from torch import Tensor

from mmaff.registry import MODELS


class HeadSegmentor(BaseSegmentor):
    """Backbone (+ neck) + one head whose ``loss`` trains the model.

    The shared part of mmaff's stage models. Subclasses name the head's
    attribute (``head_name``, e.g. ``'cam_head'``, which also keys its
    parameters in ``paramwise_cfg``) and implement ``encode_decode``,
    ``_forward`` and ``predict``.

    Args:
        backbone (dict): Backbone config.
        head (dict): Head config; the head has ``loss(feats, samples)``.
        neck (dict, optional): Neck config.
        train_cfg (dict, optional): Kept as ``self.train_cfg``.
        test_cfg (dict, optional): Kept as ``self.test_cfg``.
        data_preprocessor (dict, optional): e.g. ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    head_name = 'head'

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        setattr(self, self.head_name, MODELS.build(head))
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    @property
    def head(self):
        """The model's head."""
        return getattr(self, self.head_name)

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor]:
        """Backbone (and neck) features."""
        x = self.backbone(inputs)
        if self.with_neck:
            x = self.neck(x)
        return x

    def loss(self, inputs: Tensor, data_samples: List) -> dict:
        """The head's loss on the batch."""
        return self.head.loss(self.extract_feat(inputs), data_samples)
