# Copyright (c) mmaff contributors. All rights reserved.
import numpy as np
import pytest
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


def _model(test_cfg=None, **head):
    return MODELS.build(
        dict(
            type='AffinityNet',
            backbone=TINY,
            aff_head=dict(
                type='AffinityHead',
                in_channels=(16, 32, 64),
                channels=(8, 8, 16),
                out_channels=32,
                **head),
            test_cfg=test_cfg))


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


# ------------------------------------------------------ stage 4: the walk

WALK = dict(alpha=4, beta=2, steps=6)


def _walk_model(test_cfg=WALK):
    torch.manual_seed(0)
    model = _model(test_cfg, radius=3)
    model.init_weights()
    model.eval()
    return model


def _cams(k, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    cams = torch.rand(k, h, w, generator=g)
    return (cams / cams.flatten(1).amax(1)[:, None, None]).numpy()


def _walk_samples(shapes, cams):
    """Samples of (H, W) images with metainfo cams / cam_labels (or none:
    ``cams[i] is None``), as LoadCAMs + PackSegInputs make them."""
    out = []
    for shape, cam in zip(shapes, cams):
        s = SegDataSample()
        meta = dict(img_shape=shape, ori_shape=shape)
        if cam is not None:
            meta.update(cams=cam[0], cam_labels=cam[1])
        s.set_metainfo(meta)
        out.append(s)
    return out


def _expected_affinity(model, x, i, shape):
    """Affinities of image i's own grid, from the features (not predict)."""
    gh, gw = -(-shape[0] // 8), -(-shape[1] // 8)
    with torch.no_grad():
        feats = model._forward(x)
    return affinity_from_features(feats[i:i + 1, :, :gh, :gw], 3)[0]


def _label_ids(scores, labels):
    """Argmax over the channels -> label ids, by hand."""
    ids = torch.tensor([0] + list(labels))
    return ids[scores.argmax(0)]


def test_predict_walks_the_cams_of_each_image_on_its_own_grid():
    from mmaff.ops import propagate_cams, scores_to_label
    model = _walk_model()
    x = torch.randn(2, 3, 48, 64)
    shapes = [(45, 61), (33, 40)]  # padded to 48 x 64: grids 6x8 and 5x5
    cams = [(_cams(2, 45, 61, 1), (3, 15)), (_cams(1, 33, 40, 2), (7, ))]
    with torch.no_grad():
        out = model.predict(x, _walk_samples(shapes, cams))
    for i, (shape, (cam, labels)) in enumerate(zip(shapes, cams)):
        sample = out[i]
        aff = _expected_affinity(model, x, i, shape)
        torch.testing.assert_close(sample.pred_affinity.data, aff)
        expected = propagate_cams(
            torch.from_numpy(cam), aff, alpha=4, beta=2, steps=6, radius=3,
            stride=8)
        scores = sample.seg_logits.data
        assert scores.shape == (len(labels) + 1, ) + shape
        torch.testing.assert_close(scores, expected)
        assert sample.metainfo['score_labels'] == [0] + list(labels)
        pred = sample.pred_sem_seg.data
        assert pred.shape == (1, ) + shape
        torch.testing.assert_close(pred[0], scores_to_label(expected, labels))
        torch.testing.assert_close(pred[0], _label_ids(expected, labels))
        assert set(pred.unique().tolist()) <= {0, *labels}
    # not a trivial map: more than one label on the first image
    assert len(out[0].pred_sem_seg.data.unique()) > 1


def test_test_cfg_sets_the_walk():
    from mmaff.ops import propagate_cams
    x = torch.randn(1, 3, 40, 48)
    cam = (_cams(2, 40, 48, 3), (1, 2))
    results = {}
    base = _walk_model()
    for cfg in (WALK, dict(WALK, alpha=1), dict(beta=2, steps=6), None):
        model = _walk_model(cfg)
        model.load_state_dict(base.state_dict())
        with torch.no_grad():
            out = model.predict(x, _walk_samples([(40, 48)], [cam]))[0]
        walk = dict(cfg or {})
        aff = _expected_affinity(model, x, 0, (40, 48))
        # what is left out takes propagate_cams' defaults (alpha 16, beta 8,
        # steps 256); radius and stride are the head's
        expected = propagate_cams(
            torch.from_numpy(cam[0]), aff, radius=3, stride=8, **walk)
        torch.testing.assert_close(out.seg_logits.data, expected)
        results[str(cfg)] = out.seg_logits.data
    # a different alpha changes the result as propagate_cams does
    a4, a1 = results[str(WALK)], results[str(dict(WALK, alpha=1))]
    assert not torch.allclose(a4, a1)
    assert not torch.allclose(a4, results[str(dict(beta=2, steps=6))])
    # the background channel grows as alpha falls ((1 - max) ** alpha)
    assert (a1[0] >= a4[0] - 1e-6).all() and (a1[0] > a4[0]).any()
    torch.testing.assert_close(a1[1:], a4[1:])


def test_unknown_test_cfg_key_raises():
    with pytest.raises(ValueError, match=r"unknown test_cfg keys \['mode'"):
        _walk_model(dict(alpha=4, mode='whole'))
    with pytest.raises(ValueError, match='radius'):
        _walk_model(dict(radius=5))


def test_samples_without_cams_get_only_affinities():
    model = _walk_model()
    x = torch.randn(2, 3, 48, 64)
    shapes = [(45, 61), (33, 40)]
    cams = [None, (_cams(1, 33, 40, 2), (7, ))]
    with torch.no_grad():
        out = model.predict(x, _walk_samples(shapes, cams))
        bare = model.predict(x)
    assert 'pred_affinity' in out[0]
    for key in ('seg_logits', 'pred_sem_seg'):
        assert key not in out[0]
        assert key in out[1]
    assert 'score_labels' not in out[0].metainfo
    # without data samples: the padded grid, affinities only
    for sample in bare:
        assert sample.pred_affinity.data.shape[-2:] == (6, 8)
        assert 'pred_sem_seg' not in sample and 'seg_logits' not in sample


def test_image_without_classes_is_all_background():
    model = _walk_model()
    x = torch.randn(1, 3, 40, 48)
    cam = (np.zeros((0, 37, 45), np.float32), ())
    with torch.no_grad():
        out = model.predict(x, _walk_samples([(37, 45)], [cam]))[0]
    assert out.seg_logits.data.shape == (1, 37, 45)
    assert out.metainfo['score_labels'] == [0]
    assert (out.pred_sem_seg.data == 0).all()


@pytest.mark.parametrize('test_cfg', [
    dict(alpha=0), dict(beta=-1), dict(steps=2.5), dict(steps=0),
    dict(alpha='x'), dict(beta=float('inf')), dict(steps=True)
])
def test_bad_walk_settings_fail_at_construction(test_cfg):
    with pytest.raises(ValueError, match='test_cfg'):
        _model(test_cfg)
