# Copyright (c) mmaff contributors. All rights reserved.
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmaff.registry import MODELS


def image_label_targets(data_samples: Sequence, num_classes: int,
                        device: Union[str, torch.device]) -> Tensor:
    """Multi-hot targets (B, C) from the samples' ``img_labels`` (ids 1..C).

    Args:
        data_samples (Sequence): Samples with metainfo ``img_labels``.
        num_classes (int): Number of foreground classes C.
        device: Device of the result.

    Returns:
        Tensor: (B, C) float 0/1.
    """
    target = torch.zeros(len(data_samples), num_classes, device=device)
    for i, sample in enumerate(data_samples):
        if 'img_labels' not in sample.metainfo:
            raise KeyError(
                'a data sample has no image-level labels (metainfo '
                "'img_labels'): use an image-label dataset and add "
                "'img_labels' to PackSegInputs' meta_keys")
        for label in sample.metainfo['img_labels']:
            if not 1 <= int(label) <= num_classes:
                raise ValueError(
                    f'image label {label} of {sample.metainfo.get("img_path")}'
                    f' is outside 1..{num_classes}')
            target[i, int(label) - 1] = 1
    return target


@MODELS.register_module()
class CAMHead(BaseModule):
    """Classification head whose weights give class activation maps.

    Dropout2d -> global average pooling -> 1x1 conv without bias, trained
    with the multi-label soft-margin loss on the C foreground logits. The CAM
    of class c is ``ReLU(w_c . f(x))`` on the un-pooled feature map, without
    dropout.

    Args:
        in_channels (int): Channels of the backbone's last feature map.
        num_classes (int): Number of foreground classes C (20 for VOC).
        dropout_ratio (float): Dropout2d before pooling. Defaults to 0.5.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        in_index (int): Which backbone output to use. Defaults to -1.
        init_cfg (dict): Defaults to Xavier-uniform on the conv.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 dropout_ratio: float = 0.5,
                 loss_weight: float = 1.0,
                 in_index: int = -1,
                 init_cfg: dict = dict(
                     type='Xavier', layer='Conv2d',
                     distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.in_index = in_index
        self.dropout = nn.Dropout2d(dropout_ratio) \
            if dropout_ratio > 0 else nn.Identity()
        self.conv_cls = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def pre_logits(self, feats: Tuple[Tensor]) -> Tensor:
        """The feature map the head works on.

        Args:
            feats (tuple[Tensor]): Backbone outputs.

        Returns:
            Tensor: (B, in_channels, h, w).
        """
        return feats[self.in_index]

    def forward(self, feats: Tuple[Tensor]) -> Tensor:
        """Image-level logits.

        Args:
            feats (tuple[Tensor]): Backbone outputs.

        Returns:
            Tensor: (B, C) logits.
        """
        x = self.dropout(self.pre_logits(feats))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.conv_cls(x).flatten(1)

    def cam(self, feats: Tuple[Tensor]) -> Tensor:
        """Class activation maps ``ReLU(w_c . f(x))`` at the feature stride.

        Args:
            feats (tuple[Tensor]): Backbone outputs.

        Returns:
            Tensor: (B, C, h, w).
        """
        return F.relu(self.conv_cls(self.pre_logits(feats)))

    def loss(self, feats: Tuple[Tensor], data_samples: List) -> dict:
        """Multi-label soft-margin loss on image-level labels.

        Args:
            feats (tuple[Tensor]): Backbone outputs.
            data_samples (list): Samples with metainfo ``img_labels``.

        Returns:
            dict: ``loss_cls`` and ``acc_cls`` (exact-match accuracy of the
            thresholded logits, for logging).
        """
        logits = self(feats)
        target = image_label_targets(data_samples, self.num_classes,
                                     logits.device)
        # mean over classes and batch == multilabel_soft_margin_loss
        loss = F.binary_cross_entropy_with_logits(logits, target)
        with torch.no_grad():
            acc = ((logits > 0).float() == target).all(1).float().mean()
        return dict(loss_cls=self.loss_weight * loss, acc_cls=acc)

    def predict(self, feats: Tuple[Tensor]) -> Tensor:
        """Class probabilities (sigmoid of the logits).

        Args:
            feats (tuple[Tensor]): Backbone outputs.

        Returns:
            Tensor: (B, C).
        """
        return torch.sigmoid(self(feats))
