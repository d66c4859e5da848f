# Copyright (c) mmaff contributors. All rights reserved.
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401
from mmaff.registry import MODELS
from mmaff.utils import register_all_modules

register_all_modules()

TINY_BACKBONE = dict(
    type='ResNetV1c',
    depth=18,
    stem_channels=8,
    base_channels=8,
    num_stages=4,
    out_indices=(3, ),
    dilations=(1, 1, 2, 4),
    strides=(1, 2, 1, 1),
    contract_dilation=True)


def _sample(labels, shape):
    s = SegDataSample()
    s.set_metainfo(
        dict(img_labels=tuple(labels), img_shape=shape, ori_shape=shape,
             img_path='x/img.jpg'))
    return s


def _model(**test_cfg):
    return MODELS.build(
        dict(
            type='CAMClassifier',
            backbone=TINY_BACKBONE,
            cam_head=dict(type='CAMHead', in_channels=64, num_classes=5),
            test_cfg=test_cfg or None))


def test_cam_head_loss_equals_multilabel_soft_margin():
    torch.manual_seed(0)
    head = MODELS.build(
        dict(type='CAMHead', in_channels=7, num_classes=5,
             dropout_ratio=0.0))
    feats = (torch.randn(3, 7, 4, 6), )
    samples = [_sample(l, (32, 48)) for l in ([1, 3], [5], [2, 3, 4])]
    losses = head.loss(feats, samples)
    target = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1],
                           [0, 1, 1, 1, 0]]).float()
    expected = F.multilabel_soft_margin_loss(head(feats), target)
    torch.testing.assert_close(losses['loss_cls'], expected)


def test_cam_head_gap_then_conv_equals_mean_of_cam_logits():
    torch.manual_seed(0)
    head = MODELS.build(
        dict(type='CAMHead', in_channels=6, num_classes=4,
             dropout_ratio=0.0))
    head.init_weights()
    assert head.conv_cls.bias is None
    x = torch.randn(2, 6, 5, 7)
    w = head.conv_cls.weight[:, :, 0, 0]
    logits = head((x, ))
    torch.testing.assert_close(logits, x.mean((2, 3)) @ w.t())
    cam = head.cam((x, ))
    manual = torch.einsum('bkhw,ck->bchw', x, w).clamp(min=0)
    torch.testing.assert_close(cam, manual)


def test_cam_head_rejects_bad_labels():
    head = MODELS.build(dict(type='CAMHead', in_channels=4, num_classes=3))
    feats = (torch.randn(1, 4, 2, 2), )
    with pytest.raises(ValueError, match='outside 1..3'):
        head.loss(feats, [_sample([4], (16, 16))])
    s = SegDataSample()
    with pytest.raises(KeyError, match='img_labels'):
        head.loss(feats, [s])


def _resize(cam, size):
    # independent bilinear resize (half-pixel centres) with OpenCV
    h, w = size
    return np.stack([
        cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in cam
    ])


@pytest.mark.parametrize('flip', [True, False])
def test_cam_classifier_multiscale_aggregation(flip):
    torch.manual_seed(0)
    model = _model(scales=(1.0, 0.5, 1.5), flip=flip, bg_threshold=0.2)
    model.eval()
    h, w = 37, 45
    img = torch.randn(1, 3, h, w)
    labels = [2, 5]
    with torch.no_grad():
        out = model.predict(img, [_sample(labels, (h, w))])[0]
        total = np.zeros((5, h, w), np.float64)
        for s in (1.0, 0.5, 1.5):
            x = img if s == 1.0 else F.interpolate(
                img, scale_factor=s, mode='bilinear', align_corners=False)
            views = [(x, False)] + ([(x.flip(-1), True)] if flip else [])
            for v, flipped in views:
                feat = model.backbone(v)[-1]
                wgt = model.cam_head.conv_cls.weight[:, :, 0, 0]
                cam = torch.einsum('bkhw,ck->bchw', feat, wgt).clamp(min=0)
                cam = _resize(cam[0].numpy(), (h, w))
                if flipped:
                    cam = cam[:, :, ::-1]
                total += cam
    present = np.zeros(5)
    present[[l - 1 for l in labels]] = 1
    total *= present[:, None, None]
    expected = total / (total.reshape(5, -1).max(1)[:, None, None] + 1e-5)
    cams = out.pred_cams.data.numpy()
    assert cams.shape == (5, h, w)
    np.testing.assert_allclose(cams, expected, atol=2e-4)
    assert (cams[[0, 2, 3]] == 0).all()
    # segmentation: argmax of [0.2, CAMs]
    stack = np.concatenate([np.full((1, h, w), 0.2), expected[[1, 4]]])
    lut = np.array([0, 2, 5])
    pred = out.pred_sem_seg.data[0].numpy()
    agree = (pred == lut[stack.argmax(0)]).mean()
    assert agree > 0.999


def test_cam_classifier_predict_crops_padding_and_uses_ori_shape():
    torch.manual_seed(0)
    model = _model(scales=(1.0, ), flip=False)
    model.eval()
    img = torch.randn(1, 3, 24, 40)
    padded = F.pad(img, (0, 8, 0, 16), value=0)
    with torch.no_grad():
        a = model.predict(img, [_sample([1], (24, 40))])[0]
        b = model.predict(padded, [_sample([1], (24, 40))])[0]
    assert b.pred_cams.data.shape == (5, 24, 40)
    torch.testing.assert_close(a.pred_cams.data, b.pred_cams.data)


def test_cam_classifier_trains_and_loss_falls():
    torch.manual_seed(0)
    model = _model()
    model.train()
    x = torch.randn(4, 3, 32, 32)
    samples = [_sample(l, (32, 32)) for l in ([1], [2, 3], [4], [5, 1])]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(30):
        loss = model.loss(x, samples)['loss_cls']
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
