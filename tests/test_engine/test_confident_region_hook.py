# Copyright (c) mmaff contributors. All rights reserved.
"""ConfidentRegionHook: stage 2 during the CAM test run.

The hook driven directly with fake CAM test samples (maps, float16
rounding, resuming, workers, errors, arguments), the CAM configs that carry
it, and the whole CAM test run of the demo config through ``tools/test.py``
(CAM files, maps and both metrics).
"""
import json
import os
import os.path as osp
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.engine.hooks import CAMExportHook, ConfidentRegionHook
from mmaff.engine.hooks import export_hook as export_module
from mmaff.models import DenseCRF, build_refiner
from mmaff.ops.confident import confident_region_map
from mmaff.registry import HOOKS, METRICS
from mmaff.utils import register_all_modules
from mmaff.utils.handover import resolve_handovers
from mmaff.utils.io import load_cam_file, load_label_png
from mmaff_testing import DEMO_CAM, folder_bytes, mtimes, run_hook

register_all_modules()

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, DEMO_CAM)
CAM_CONFIG = osp.join(
    REPO, 'configs/affinitynet/'
    'affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py')

#: CAM channels of the fake model (label ids 1..5).
NUM_CLASSES = 5
#: Non-default settings (small images): the hook must pass each on.
SETTINGS = dict(
    alpha_low=3, alpha_high=16, stride=4, refiner=DenseCRF(bilateral_sxy=5))
# id -> (height, width, label ids)
IMAGES = {
    'img_a': (30, 41, (3, )),
    'img_b': (24, 24, (2, 5)),
    'img_c': (19, 33, ()),
    'img_d': (37, 50, (1, 4)),
}


def _image_and_cams(height, width, labels, seed):
    """An image with a coloured rectangle per class and (C, H, W) CAMs:
    a blob on each present class's rectangle, noise in the absent classes'
    channels (the hook must not use them)."""
    rng = np.random.default_rng(seed)
    img = np.clip(120 + rng.normal(0, 5, (height, width, 3)), 0, 255)
    yy, xx = np.mgrid[:height, :width]
    cams = rng.uniform(0, 1, (NUM_CLASSES, height, width))
    for k, cls in enumerate(labels):
        cy = height * (k + 1) // (len(labels) + 1)
        cx = width * (k + 1) // (len(labels) + 1)
        box = (abs(yy - cy) <= height // 5) & (abs(xx - cx) <= width // 5)
        img[box] = rng.integers(0, 255, 3)
        cam = np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * (height / 5)**2))
        cams[cls - 1] = cam / (cam.max() + 1e-5)
    return img.astype(np.uint8), torch.from_numpy(cams.astype(np.float32))


def read_rgb_cv2(path):
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def cam_sample(img_path, shape, labels, cams):
    """A test sample as CAMClassifier returns it."""
    sample = SegDataSample(
        metainfo=dict(
            img_path=img_path, ori_shape=shape, img_labels=tuple(labels)))
    sample.pred_cams = PixelData(data=cams)
    return sample


@pytest.fixture
def fake(tmp_path):
    """Samples of 4 JPEG images (one without a class) and the folder."""
    img_dir = tmp_path / 'JPEGImages'
    img_dir.mkdir()
    samples = []
    for seed, (img_id, (h, w, labels)) in enumerate(IMAGES.items()):
        img, cams = _image_and_cams(h, w, labels, seed)
        path = str(img_dir / f'{img_id}.jpg')
        cv2.imwrite(path, img[..., ::-1])
        samples.append(cam_sample(path, (h, w), labels, cams))
    return SimpleNamespace(
        samples=samples, ids=list(IMAGES), out=str(tmp_path / 'conf'))


def expected_map(sample, cams=None, **settings):
    """The map from its definition: the present classes' CAMs rounded to
    float16 (as the CAM files store them), the JPEG read as RGB."""
    labels = list(sample.img_labels)
    if cams is None:
        cams = sample.pred_cams.data[[c - 1 for c in labels]]
        cams = cams.numpy().astype(np.float16).astype(np.float32)
    return confident_region_map(
        read_rgb_cv2(sample.img_path), cams, labels, **settings)


@pytest.fixture
def logs(monkeypatch):
    """The hooks' log lines."""
    lines = []
    monkeypatch.setattr(
        export_module,
        'print_log',
        lambda msg, logger=None, level=None: lines.append(msg))
    return lines


def check_maps(ex, samples=None, **settings):
    for sample, img_id in zip(samples or ex.samples, ex.ids):
        got = load_label_png(
            osp.join(ex.out, img_id + '.png'), sample.ori_shape)
        np.testing.assert_array_equal(
            got, expected_map(sample, **settings), err_msg=img_id)
        assert set(np.unique(got).tolist()) <= {0, 255, *sample.img_labels}


# -- the hook, driven directly ---------------------------------------------


def test_writes_the_maps_of_the_float16_cams(fake, logs):
    ex = fake
    hook = ConfidentRegionHook(ex.out, **SETTINGS)
    run_hook(hook, ex.samples)
    assert sorted(os.listdir(ex.out)) == sorted(i + '.png' for i in ex.ids)
    check_maps(ex, **SETTINGS)
    assert not load_label_png(osp.join(ex.out, 'img_c.png')).any()
    assert logs[-1].startswith(
        f'ConfidentRegionHook: 4 images, 4 written to {ex.out}, 0 skipped')
    # the fixture is informative: fg, bg and unsure pixels, and each
    # setting changes some map
    values = set()
    for name in os.listdir(ex.out):
        values |= set(np.unique(load_label_png(osp.join(ex.out, name))))
    assert {0, 255, 3} <= values and values & {1, 4} and values & {2, 5}
    for key in SETTINGS:
        partial = {k: v for k, v in SETTINGS.items() if k != key}
        assert any(
            (load_label_png(osp.join(ex.out, i +
                                     '.png')) != expected_map(s, **partial)
             ).any() for s, i in zip(ex.samples, ex.ids)), key
    # the job holds the present classes' CAMs rounded to float16
    sample = ex.samples[3]  # labels 1 and 4
    job = hook.job(sample, dict(conf='x.png'))
    cams = sample.pred_cams.data[[0, 3]].numpy()
    np.testing.assert_array_equal(job['cams'],
                                  cams.astype(np.float16).astype(np.float32))
    assert (job['cams'] != cams).any()
    assert job['labels'] == [1, 4] and job['settings'] == SETTINGS


def test_maps_equal_those_from_the_cam_files(fake, tmp_path):
    """Next to CAMExportHook (as in the configs): the maps are those that
    stage 2 computes from the CAM files."""
    ex = fake
    cam_dir = str(tmp_path / 'cams')
    cam_hook = CAMExportHook(cam_dir)
    conf_hook = ConfidentRegionHook(ex.out, **SETTINGS)
    runner = SimpleNamespace(test_dataloader=[[s] for s in ex.samples])
    for hook in (cam_hook, conf_hook):
        hook.before_test_epoch(runner)
    for idx, sample in enumerate(ex.samples):
        for hook in (cam_hook, conf_hook):
            hook.after_test_iter(runner, idx, None, [sample])
    for hook in (cam_hook, conf_hook):
        hook.after_test_epoch(runner, {})
    for sample, img_id in zip(ex.samples, ex.ids):
        cams, labels = load_cam_file(
            osp.join(cam_dir, img_id + '.npz'), sample.ori_shape,
            sample.img_labels)
        np.testing.assert_array_equal(
            load_label_png(osp.join(ex.out, img_id + '.png')),
            confident_region_map(
                read_rgb_cv2(sample.img_path), cams, labels.tolist(),
                **SETTINGS))


def test_skips_existing_maps_and_resumes(fake, logs, monkeypatch):
    ex = fake
    run_hook(ConfidentRegionHook(ex.out, **SETTINGS), ex.samples)
    before = mtimes(ex.out)

    def fail(*args, **kwargs):
        raise AssertionError('finished images must be skipped')

    monkeypatch.setattr(ConfidentRegionHook, 'job', fail)
    monkeypatch.setattr(ConfidentRegionHook, 'worker', staticmethod(fail))
    again = ConfidentRegionHook(ex.out, **SETTINGS)
    run_hook(again, ex.samples)
    assert mtimes(ex.out) == before
    assert again.num_skipped == 4 and again.num_written == 0
    assert '4 skipped (files exist) (overwrite=True rewrites them)' \
        in logs[-1]
    monkeypatch.undo()

    # only the missing map is computed
    os.remove(osp.join(ex.out, 'img_b.png'))
    third = ConfidentRegionHook(ex.out, **SETTINGS)
    run_hook(third, ex.samples)
    assert third._written == ['img_b'] and third.num_skipped == 3
    after = mtimes(ex.out)
    assert sorted(after) == sorted(before)
    assert all(after[n] == before[n] for n in after if n != 'img_b.png')
    check_maps(ex, **SETTINGS)

    # overwrite=True rewrites every map, from the new CAMs (mirrored)
    other = [
        cam_sample(s.img_path, s.ori_shape, s.img_labels,
                   s.pred_cams.data.flip(-1)) for s in ex.samples
    ]
    old = folder_bytes(ex.out)
    run_hook(ConfidentRegionHook(ex.out, overwrite=True, **SETTINGS), other)
    check_maps(ex, other, **SETTINGS)
    assert folder_bytes(ex.out) != old


def test_workers_give_the_same_bytes_as_inline(fake, tmp_path):
    ex = fake

    def export(folder, **kw):
        hook = ConfidentRegionHook(str(tmp_path / folder), **SETTINGS, **kw)
        seen = {}

        def check():  # after the last iteration, before after_test_epoch
            seen['files'] = sorted(os.listdir(hook.out_dir))
            seen['pool'] = hook._pool

        run_hook(hook, ex.samples, before_epoch_end=check)
        # the evaluator (ConfidentRegionMetric) reads them there
        assert seen == dict(
            files=sorted(i + '.png' for i in ex.ids), pool=None)
        return folder_bytes(hook.out_dir)

    inline = export('inline')
    assert len(inline) == 4
    assert export('fork2', num_workers=2, max_pending=1) == inline


@pytest.mark.parametrize('num_workers', [0, 2])
def test_errors_name_the_image(fake, num_workers):
    ex = fake
    # an image that cannot be read
    os.remove(ex.samples[2].img_path)
    hook = ConfidentRegionHook(ex.out, num_workers=num_workers)
    path = re.escape(ex.samples[2].img_path)
    with pytest.raises(
            RuntimeError,
            match=f'ConfidentRegionHook: image img_c \\({path}\\) failed: '
            'FileNotFoundError'):
        run_hook(hook, ex.samples)
    assert hook._pool is None  # the pool is shut down
    assert 'img_c.png' not in os.listdir(ex.out)
    assert not [n for n in os.listdir(ex.out) if '.tmp-' in n]
    # CAMs of another size than the image
    s = ex.samples[1]
    wrong = cam_sample(s.img_path, (24, 23), s.img_labels,
                       torch.rand(NUM_CLASSES, 24, 23))
    with pytest.raises(
            RuntimeError,
            match=r'image img_b .*image size \(24, 24\) does not match'):
        run_hook(
            ConfidentRegionHook(
                ex.out, num_workers=num_workers, overwrite=True), [wrong])


@pytest.mark.parametrize('kwargs', [
    dict(alpha_low=0),
    dict(alpha_high=-1),
    dict(alpha_low=float('inf')),
    dict(alpha_high=float('nan')),
    dict(alpha_low=True),
    dict(alpha_high='24'),
    dict(crf=dict(sxy=3)),
    dict(crf=dict(bilateral_sxy=20, iters=3)),
    dict(refiner=dict(type='PAR', sigma=3)),
    dict(refiner=dict(type='CAMHead')),
    dict(refiner=dict(type='DenseCRF'), crf=dict(bilateral_sxy=20)),
    dict(num_workers=-1),
    dict(out_dir=''),
])
def test_bad_arguments(tmp_path, kwargs):
    args = dict(out_dir=str(tmp_path / 'conf'))
    args.update(kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs)).split('_')[0]):
        ConfidentRegionHook(**args)


# -- the CAM configs ---------------------------------------------------------


@pytest.mark.parametrize(
    'config, settings, num_workers',
    [(CAM_CONFIG,
      dict(alpha_low=4, alpha_high=24, stride=8, refiner=DenseCRF()), 8),
     (DEMO_CONFIG,
      dict(alpha_low=0.7, alpha_high=2, stride=8,
           refiner=DenseCRF(bilateral_sxy=20)), 2)],
    ids=['affinitynet', 'demo'])
def test_cam_configs_export_and_score_confident_regions(
        config, settings, num_workers):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(handover_root='/elsewhere'))
    resolve_handovers(cfg)
    hooks = {h.type: HOOKS.build(h) for h in cfg.custom_hooks}
    assert set(hooks) == {'CAMExportHook', 'ConfidentRegionHook'}
    hook = hooks['ConfidentRegionHook']
    assert hook.out_dir == cfg.handovers.conf == '/elsewhere/conf'
    assert hooks['CAMExportHook'].out_dir == '/elsewhere/cams'
    assert hook.settings == settings and hook.num_workers == num_workers
    metrics = [METRICS.build(m) for m in cfg.test_evaluator]
    assert [type(m).__name__
            for m in metrics] == ['CAMMetric', 'ConfidentRegionMetric']
    assert metrics[1].conf_dir == '/elsewhere/conf'
    # every image of the test run is exported once, with its mask
    loader = cfg.test_dataloader
    assert loader.sampler.round_up is False and loader.sampler.shuffle is False
    assert loader.dataset.data_prefix.seg_map_path == 'SegmentationClass'


# -- end to end: tools/test.py on the demo config ---------------------------


def test_cam_test_run_writes_cams_maps_and_both_metrics(tmp_path, run_tool):
    """``tools/test.py DEMO_CONFIG CKPT --cfg-options handover_root=DIR``
    from a user's folder (``configs`` linked, a tiny
    demo set in ``data/demo``, a randomly initialised model): the CAM file
    and the confident-region map of every test image, and the metrics of
    CAMMetric and ConfidentRegionMetric (computed from those maps)."""
    from mmaff.apis import init_model
    ws = tmp_path / 'ws'
    ws.mkdir()
    os.symlink(osp.join(REPO, 'configs'), ws / 'configs')
    run_tool([
        osp.join(REPO, 'tools/dataset_converters/make_demo_dataset.py'),
        'data/demo', '--num-train', '4', '--num-val', '1', '--size', '64'
    ], ws)
    torch.manual_seed(0)
    model = init_model(DEMO_CONFIG)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ws / 'cam.pth')
    handovers = tmp_path / 'h'
    out = run_tool([
        osp.join(REPO, 'tools/test.py'), DEMO_CAM, 'cam.pth', '--metrics-out',
        'metrics.json', '--cfg-options', f'handover_root={handovers}',
        'test_dataloader.num_workers=0'
    ], ws)

    # the test split of the demo's CAM config is the demo's train.txt
    demo = ws / 'data' / 'demo'
    ids = (demo / 'ImageSets/Segmentation/train.txt').read_text().split()
    held = (demo / 'ImageSets/Segmentation/holdout.txt').read_text().split()
    assert len(ids) == 4 and held == ids[:1]
    assert sorted(os.listdir(handovers / 'cams')) == sorted(i + '.npz'
                                                            for i in ids)
    assert sorted(os.listdir(handovers / 'conf')) == sorted(i + '.png'
                                                            for i in ids)
    cfg = Config.fromfile(DEMO_CONFIG)
    hook_cfg = [
        h for h in cfg.custom_hooks if h.type == 'ConfidentRegionHook'
    ][0]
    settings = dict(
        alpha_low=hook_cfg.alpha_low,
        alpha_high=hook_cfg.alpha_high,
        refiner=build_refiner(hook_cfg.refiner))
    conf, gt = [], []
    for img_id in ids:
        image = read_rgb_cv2(str(demo / 'JPEGImages' / f'{img_id}.jpg'))
        cams, labels = load_cam_file(
            str(handovers / 'cams' / f'{img_id}.npz'), image.shape[:2])
        assert len(labels) > 0  # every demo image has a class
        got = load_label_png(
            str(handovers / 'conf' / f'{img_id}.png'), image.shape[:2])
        np.testing.assert_array_equal(
            got,
            confident_region_map(image, cams, labels.tolist(), **settings),
            err_msg=img_id)
        if img_id in held:
            continue  # the metrics leave the held-out image out
        conf.append(got.ravel())
        gt.append(
            load_label_png(str(demo / 'SegmentationClass' /
                               f'{img_id}.png')).ravel())
    assert 'ConfidentRegionHook: 4 images, 4 written to' in out

    with open(ws / 'metrics.json') as f:
        metrics = json.load(f)
    assert 0 <= metrics['mIoU'] <= 100 and 'bg_threshold' in metrics
    # ConfidentRegionMetric's figures, from the maps and the masks
    conf, gt = np.concatenate(conf), np.concatenate(gt)
    valid = gt != 255
    conf, gt = conf[valid], gt[valid]
    fg, bg = (conf != 0) & (conf != 255), conf == 0

    def ratio(num, den):
        return round(float(num) / den, 4) if den else None

    right_fg, right_bg = (fg & (conf == gt)).sum(), (bg & (gt == 0)).sum()
    keys = ('fg_precision', 'bg_precision', 'fg_recall', 'bg_recall',
            'unsure_fraction')
    # (informative: the maps hold fg, bg and unsure pixels)
    assert fg.any() and bg.any() and (conf == 255).any(), metrics
    assert {
        k: metrics[k]
        for k in keys
    } == dict(
        fg_precision=ratio(right_fg, fg.sum()),
        bg_precision=ratio(right_bg, bg.sum()),
        fg_recall=ratio(right_fg, (gt != 0).sum()),
        bg_recall=ratio(right_bg, (gt == 0).sum()),
        unsure_fraction=ratio((conf == 255).sum(), valid.sum()))
