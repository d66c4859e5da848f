# Copyright (c) mmaff contributors. All rights reserved.
"""CAMLocalVisualizer: CAM heat maps for ``tools/test.py --show-dir``.

Unit tests draw synthetic samples to files and compare pixels; the end-to-end
test runs ``tools/test.py DEMO_CAM CKPT --show-dir vis`` (the demo's CAM
config) as a subprocess and counts the pictures.

Where the pictures land (mmseg's behaviour, kept): ``tools/test.py`` sets
``visualizer.save_dir = --show-dir`` and turns on the ``visualization`` hook
(mmseg's ``SegVisualizationHook``). mmengine's ``Visualizer`` puts its
backends under ``<save_dir>/vis_data`` and ``LocalVisBackend`` writes every
image as ``vis_image/<name>_<step>.png``; the hook names them
``test_<image file name>`` at the runner's iteration (0 when testing). So::

    <show-dir>/vis_data/vis_image/test_<id>.jpg_0.png

with a relative ``--show-dir`` taken from the current directory (not from the
work dir, and with no timestamp folder; mmdet's hook is the one that adds
``<work_dir>/<timestamp>/``). The hook draws every ``interval``-th test
image only (``(batch_idx + 1) % interval == 0``; mmseg's default is 50, so a
test set of fewer than 50 images gets none): the end-to-end test passes
``default_hooks.visualization.interval=1``.
"""
import os
import os.path as osp
import uuid

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

import mmaff  # noqa: F401  (environment fixes before mmseg.models)
from mmaff.visualization import CAMLocalVisualizer
from mmaff_testing import DEMO_AFF, DEMO_CAM, DEMO_SEG

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CLASSES = ('background', 'dots', 'stripes', 'rings', 'checks', 'cross')
PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128],
           [128, 0, 128]]
H, W = 40, 56
SQUARE = (slice(10, 22), slice(30, 42))  # label 3's CAM is 1 here
ABSENT = (slice(26, 34), slice(4, 14))  # label 4 (absent)'s channel is 1


def _visualizer(cls):
    # unique names: mmengine keeps visualizers built by name as instances
    vis = cls(name=f'vis_{uuid.uuid4().hex}')
    vis.dataset_meta = dict(classes=CLASSES, palette=PALETTE)
    return vis


def _image():
    return np.random.default_rng(0).integers(
        30, 226, (H, W, 3), dtype=np.uint8)


def _sample(cams=True, labels=(1, 3)):
    """A CAM sample: labels 1 and 3 present; channel 2 (label 3) is 1 in
    SQUARE, channel 0 (label 1) is 0 everywhere, and channel 3 (label 4,
    absent) is 1 in ABSENT, which must not be drawn."""
    sample = SegDataSample(metainfo=dict(img_labels=list(labels)))
    seg = torch.zeros(1, H, W, dtype=torch.long)
    seg[0, SQUARE[0], SQUARE[1]] = 3
    sample.gt_sem_seg = PixelData(data=seg.clone())
    sample.pred_sem_seg = PixelData(data=seg.clone())
    if cams:
        data = torch.zeros(5, H, W)
        data[2][SQUARE] = 1
        data[3][ABSENT] = 1
        sample.pred_cams = PixelData(data=data)
    return sample


def _draw(vis, tmp_path, sample, **kwargs):
    out = str(tmp_path / f'{uuid.uuid4().hex}.png')
    vis.add_datasample('x', _image(), sample, out_file=out, **kwargs)
    return mmcv.imread(out, channel_order='rgb').astype(np.int64)


def test_registered_in_mmaff_and_mmseg():
    import mmseg.registry as mmseg_reg

    import mmaff.registry as reg
    for registry in (reg.VISUALIZERS, mmseg_reg.VISUALIZERS):
        assert registry.get('CAMLocalVisualizer') is CAMLocalVisualizer
    vis = reg.VISUALIZERS.build(
        dict(type='CAMLocalVisualizer', name=f'vis_{uuid.uuid4().hex}'))
    assert isinstance(vis, CAMLocalVisualizer)
    assert isinstance(vis, SegLocalVisualizer)


def test_heat_map_where_the_present_class_cam_is(tmp_path):
    img = _image().astype(np.int64)
    drawn = _draw(
        _visualizer(CAMLocalVisualizer),
        tmp_path,
        _sample(),
        draw_gt=False,
        with_labels=False)
    assert drawn.shape == (H, W, 3)
    diff = np.abs(drawn - img).sum(-1)
    inside = np.zeros((H, W), bool)
    inside[SQUARE] = True
    # CAM 1: jet's top colour (RGB ~(128, 0, 0)) at weight 0.6 everywhere
    assert (diff[inside] > 30).all()
    red = drawn[inside]
    np.testing.assert_allclose(
        red, 0.4 * img[inside] + 0.6 * np.array([128, 0, 0]), atol=2)
    # CAM 0 (incl. the absent class's channel): the plain image
    assert diff[~inside].max() <= 1


def test_cam_panel_title_names_the_present_classes(tmp_path, monkeypatch):
    titles = []
    draw_title = CAMLocalVisualizer._draw_title

    def spy(image, text):
        titles.append(text)
        return draw_title(image, text)

    monkeypatch.setattr(CAMLocalVisualizer, '_draw_title', staticmethod(spy))
    vis = _visualizer(CAMLocalVisualizer)
    img = _image().astype(np.int64)
    drawn = _draw(vis, tmp_path, _sample(), draw_gt=False)
    assert titles == ['dots, rings']  # label ids 1 and 3, not channels
    # the title is a box in the top-left corner; the rest is as without it
    plain = _draw(vis, tmp_path, _sample(), draw_gt=False, with_labels=False)
    changed = np.argwhere(np.abs(drawn - plain).sum(-1) > 0)
    assert len(changed) and changed[:, 0].max() < H // 3
    assert not np.abs(drawn - img)[H // 3:][:, :SQUARE[1].start].any()


def test_gt_panel_left_as_seg_visualizer(tmp_path):
    ours = _draw(_visualizer(CAMLocalVisualizer), tmp_path, _sample())
    gt_only = _draw(
        _visualizer(SegLocalVisualizer),
        tmp_path,
        _sample(cams=False),
        draw_pred=False)
    assert ours.shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(ours[:, :W], gt_only)
    alone = _draw(
        _visualizer(CAMLocalVisualizer), tmp_path, _sample(), draw_gt=False)
    np.testing.assert_array_equal(ours[:, W:], alone)


@pytest.mark.parametrize('cams,draw_pred', [(False, True), (True, False)])
def test_otherwise_draws_like_seg_visualizer(tmp_path, cams, draw_pred):
    """No pred_cams (a random walk's or a segmentor's pred_sem_seg), or
    draw_pred off: exactly SegLocalVisualizer's picture."""
    ours = _draw(
        _visualizer(CAMLocalVisualizer),
        tmp_path,
        _sample(cams=cams),
        draw_pred=draw_pred)
    theirs = _draw(
        _visualizer(SegLocalVisualizer),
        tmp_path,
        _sample(cams=cams),
        draw_pred=draw_pred)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.shape == (H, (2 if draw_pred else 1) * W, 3)


def test_configs_use_it_unless_they_inherit_mmsegs_runtime():
    for name in (DEMO_CAM[8:], DEMO_AFF[8:], DEMO_SEG[8:],
                 'affinitynet/affinitynet-cam_resnet38d_4xb4-15e_'
                 'voc12aug-448x448.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        assert cfg.visualizer.type == 'CAMLocalVisualizer', name
        assert cfg.visualizer.vis_backends == [dict(type='LocalVisBackend')]
    # mmseg's own default runtime (through mmseg's DeepLabV3 config)
    cfg = Config.fromfile(
        osp.join(
            REPO, 'configs/affinitynet/deeplabv3_r101-d8_4xb4-40k_'
            'voc12aug-512x512_affinitynet-pseudo.py'))
    assert cfg.visualizer.type == 'SegLocalVisualizer'


def test_show_dir_writes_one_cam_picture_per_test_image(tmp_path, run_tool):
    """``tools/test.py DEMO_CAM CKPT --show-dir vis`` from a user's folder
    (``configs`` linked, the demo set in ``data/demo`` as the config
    expects, a randomly initialised model saved as a checkpoint):
    the config's relative outputs (work dir, CAM files) stay in that
    folder."""
    from mmaff.apis import init_model
    ws = tmp_path / 'ws'
    ws.mkdir()
    os.symlink(osp.join(REPO, 'configs'), ws / 'configs')
    size = 64
    run_tool([
        osp.join(REPO, 'tools/dataset_converters/make_demo_dataset.py'),
        'data/demo', '--num-train', '3', '--num-val', '1', '--size',
        str(size)
    ], ws)
    torch.manual_seed(0)
    model = init_model(osp.join(REPO, DEMO_CAM))
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ws / 'cam.pth')

    run_tool([
        osp.join(REPO, 'tools/test.py'), DEMO_CAM, 'cam.pth', '--show-dir',
        'vis', '--cfg-options', 'test_dataloader.num_workers=0',
        'default_hooks.visualization.interval=1'
    ], ws)

    # the test split of the demo's CAM config is the demo's train.txt
    ids = (ws / 'data/demo/ImageSets/Segmentation/train.txt').read_text()
    ids = ids.split()
    assert len(ids) == 3
    folder = ws / 'vis' / 'vis_data' / 'vis_image'
    pngs = sorted(f for f in os.listdir(folder) if f.endswith('.png'))
    assert pngs == sorted(f'test_{i}.jpg_0.png' for i in ids)
    for i in ids:
        drawn = mmcv.imread(
            str(folder / f'test_{i}.jpg_0.png'), channel_order='rgb')
        img = mmcv.imread(
            str(ws / 'data/demo/JPEGImages' / f'{i}.jpg'), channel_order='rgb')
        # ground truth | CAM heat map; every demo image has a class, whose
        # normalised CAM peaks at 1 somewhere
        assert drawn.shape == (size, 2 * size, 3)
        cam_panel = drawn[:, size:].astype(int)
        assert np.abs(cam_panel - img).sum(-1).max() > 60
