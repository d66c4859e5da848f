# Copyright (c) mmaff contributors. All rights reserved.
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401
from mmaff.models.heads.affinity_head import grid_labels
from mmaff.ops import affinity_from_features, affinity_labels
from mmaff.registry import MODELS
from mmaff.utils import register_all_modules

register_all_modules()

TINY = dict(
    type='ResNetV1c',
    depth=18,
    stem_channels=8,
    base_channels=8,
    num_stages=4,
    out_indices=(1, 2, 3),
    dilations=(1, 1, 2, 4),
    strides=(1, 2, 1, 1),
    contract_dilation=True)


def _model():
    return MODELS.build(
        dict(
            type='AffinityNet',
            backbone=TINY,
            aff_head=dict(
                type='AffinityHead',
                in_channels=(16, 32, 64),
                channels=(8, 8, 16),
                out_channels=32)))


def _samples(labels, shapes=None):
    out = []
    for i, lab in enumerate(labels):
        s = SegDataSample(gt_sem_seg=PixelData(data=lab[None]))
        shape = shapes[i] if shapes else tuple(lab.shape)
        s.set_metainfo(dict(img_shape=shape, ori_shape=shape))
        out.append(s)
    return out


def test_grid_labels_samples_cell_centres_and_pads_with_ignore():
    label = torch.arange(20 * 13).reshape(1, 20, 13) % 251
    grid = grid_labels(label, (3, 2), stride=8)
    assert grid.shape == (1, 3, 2)
    for i in range(3):
        for j in range(2):
            y, x = 8 * i + 4, 8 * j + 4
            exp = label[0, y, x] if y < 20 and x < 13 else 255
            assert grid[0, i, j] == exp


def test_head_loss_matches_formula_from_ops():
    torch.manual_seed(0)
    head = MODELS.build(
        dict(
            type='AffinityHead', in_channels=(4, 6), channels=(3, 5),
            out_channels=7, radius=3))
    feats = [torch.randn(2, 4, 5, 6), torch.randn(2, 6, 5, 6)]
    label = torch.randint(0, 3, (2, 40, 48))
    label[0, :8] = 255
    losses = head.loss(feats, _samples(list(label)))
    aff = affinity_from_features(head(feats), 3)
    bg, fg, neg = affinity_labels(grid_labels(label, (5, 6)), 3)

    def mean(v, m):
        return (v * m).sum() / (m.sum() + 1e-5)

    expected = (mean(-torch.log(aff + 1e-5), bg) / 4 +
                mean(-torch.log(aff + 1e-5), fg) / 4 +
                mean(-torch.log(1 - aff + 1e-5), neg) / 2)
    torch.testing.assert_close(losses['loss_aff'], expected)
    assert set(losses) == {'loss_aff', 'aff_bg_pos', 'aff_fg_pos', 'aff_neg'}


def test_affinitynet_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _model()
    model.init_weights()
    model.train()
    # two textured regions: affinities should learn to split them
    x = torch.randn(2, 3, 48, 48) * 0.1
    x[:, 0, :, 24:] += 2.0
    label = torch.zeros(2, 48, 48, dtype=torch.long)
    label[:, :, 24:] = 1
    label[:, :, 20:28] = 255
    samples = _samples(list(label))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    first = None
    for _ in range(25):
        loss = model.loss(x, samples)['loss_aff']
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_affinitynet_predict_crops_each_grid():
    torch.manual_seed(0)
    model = _model()
    model.eval()
    x = torch.randn(2, 3, 48, 64)
    samples = _samples([torch.zeros(45, 61), torch.zeros(33, 40)])
    with torch.no_grad():
        out = model.predict(x, samples)
        full = model.encode_decode(x[:1, :, :40, :48])
    assert out[0].pred_affinity.data.shape == (34, 6, 8)
    assert out[1].pred_affinity.data.shape == (34, 5, 5)
    assert out[1].metainfo['grid_shape'] == (5, 5)
    # affinities of a cropped grid are those of the features there
    feats = model._forward(x)
    torch.testing.assert_close(
        out[1].pred_affinity.data,
        affinity_from_features(feats[1:2, :, :5, :5], 5)[0])
    assert full.shape == (1, 34, 5, 6)
