# Copyright (c) mmaff contributors. All rights reserved.
"""RandomWalkHook: driven directly with fake outputs, through a real
``runner.test()``, and as a 2-process gloo ``tools/dist_test.sh`` export."""
import logging
import os
import os.path as osp
import re
import socket
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import PIL.Image
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.engine.hooks import RandomWalkHook
from mmaff.engine.hooks import random_walk_hook as rw_module
from mmaff.ops import dense_crf, pair_offsets, propagate_cams, scores_to_label
from mmaff.registry import HOOKS, METRICS
from mmaff.utils import register_all_modules
from mmaff.utils.io import load_cam_file, load_label_png, save_cam_file
from mmaff.utils.handover import resolve_handovers

register_all_modules()

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NUM_PAIRS = len(pair_offsets(5))
META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
             'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label',
             'img_labels')

# -- helpers ---------------------------------------------------------------


def write_cams(cam_dir, img_id, labels, shape, seed):
    """Smooth random normalised CAMs of the present classes."""
    rng = np.random.default_rng(seed)
    h, w = shape
    cams = []
    for _ in labels:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        yy, xx = np.mgrid[:h, :w]
        blob = np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * (w / 4)**2))
        blob = blob * rng.uniform(0.8, 1.0, (h, w))
        cams.append(blob / (blob.max() + 1e-5))
    cams = np.stack(cams) if cams else np.zeros((0, h, w))
    save_cam_file(osp.join(cam_dir, img_id + '.npz'), cams, list(labels))


def random_affinity(shape, seed):
    h, w = -(-shape[0] // 8), -(-shape[1] // 8)
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(NUM_PAIRS, h, w, generator=gen) * 0.6 + 0.4


def fake_sample(img_path, shape, labels, affinity):
    sample = SegDataSample(
        metainfo=dict(
            img_path=img_path,
            ori_shape=shape,
            img_shape=shape,
            img_labels=tuple(labels)))
    sample.pred_affinity = PixelData(data=affinity)
    return sample


def read_rgb_cv2(path):
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def expected_labels(cam_path, img_path, affinity, crf=True):
    """The pseudo labels written from their definition, step by step."""
    cams, labels = load_cam_file(cam_path)
    scores = propagate_cams(torch.from_numpy(cams), affinity)
    rw = scores_to_label(scores, labels.tolist()).numpy()
    if not crf:
        return rw, None
    probs = (scores / scores.sum(0, keepdim=True)).numpy()
    q = dense_crf(read_rgb_cv2(img_path), probs)
    lut = np.array([0] + labels.tolist())
    return rw, lut[q.argmax(0)]


def run_hook(hook, samples, batch_size=2, before_epoch_end=None):
    """Drive the hook like mmengine's TestLoop does (batches of samples)."""
    batches = [
        samples[i:i + batch_size] for i in range(0, len(samples), batch_size)
    ]
    runner = SimpleNamespace(test_dataloader=batches)
    hook.before_test_epoch(runner)
    for idx, batch in enumerate(batches):
        hook.after_test_iter(runner, idx, None, batch)
    if before_epoch_end is not None:
        before_epoch_end()
    hook.after_test_epoch(runner, {})


@pytest.fixture
def exported(tiny_voc, tmp_path):
    """CAM files + fake AffinityNet outputs for every tiny_voc image and
    one extra 37 x 50 image (not a multiple of the stride)."""
    cam_dir = str(tmp_path / 'cams')
    items = []
    for k, img_id in enumerate(tiny_voc.ids):
        labels = tiny_voc.labels[img_id]
        write_cams(cam_dir, img_id, labels, tiny_voc.img_shape, k)
        items.append(
            (tiny_voc.path('JPEGImages',
                           img_id + '.jpg'), tiny_voc.img_shape, labels,
             random_affinity(tiny_voc.img_shape, k)))
    odd_path = str(tmp_path / 'odd' / 'odd_001.jpg')
    os.makedirs(osp.dirname(odd_path))
    rng = np.random.default_rng(7)
    cv2.imwrite(odd_path, rng.integers(0, 256, (37, 50, 3), dtype=np.uint8))
    write_cams(cam_dir, 'odd_001', (4, 9), (37, 50), 99)
    items.append((odd_path, (37, 50), (4, 9), random_affinity((37, 50), 9)))
    samples = [fake_sample(*item) for item in items]
    ids = [osp.splitext(osp.basename(i[0]))[0] for i in items]
    return SimpleNamespace(
        cam_dir=cam_dir,
        items=items,
        samples=samples,
        ids=ids,
        rw_dir=str(tmp_path / 'rw'),
        crf_dir=str(tmp_path / 'rw_crf'))


def make_hook(ex, **kw):
    return RandomWalkHook(
        cam_dir=ex.cam_dir, out_dir=ex.rw_dir, crf_out_dir=ex.crf_dir, **kw)


def mtimes(folder):
    return {
        name: os.stat(osp.join(folder, name)).st_mtime_ns
        for name in os.listdir(folder)
    }


# -- the hook, driven directly ---------------------------------------------


def test_hook_writes_expected_files_then_skips_them(exported, monkeypatch):
    ex = exported
    hook = make_hook(ex)
    run_hook(hook, ex.samples)
    names = sorted(i + '.png' for i in ex.ids)
    assert sorted(os.listdir(ex.rw_dir)) == names  # no temp files either
    assert sorted(os.listdir(ex.crf_dir)) == names
    for (img_path, shape, labels, aff), img_id in zip(ex.items, ex.ids):
        rw, crf = expected_labels(
            osp.join(ex.cam_dir, img_id + '.npz'), img_path, aff)
        got_rw = load_label_png(osp.join(ex.rw_dir, img_id + '.png'), shape)
        got_crf = load_label_png(osp.join(ex.crf_dir, img_id + '.png'), shape)
        np.testing.assert_array_equal(got_rw, rw)
        np.testing.assert_array_equal(got_crf, crf)
        assert set(np.unique(got_rw)) <= {0, *labels}
        if not labels:  # img_005: no class, all background
            assert not got_rw.any() and not got_crf.any()
    assert len(hook._written) == len(ex.ids) and not hook._skipped

    # second run: everything exists, nothing is recomputed or rewritten
    before = mtimes(ex.rw_dir), mtimes(ex.crf_dir)

    def fail(*args, **kwargs):
        raise AssertionError('finished images must be skipped')

    monkeypatch.setattr(rw_module, 'propagate_cams', fail)
    monkeypatch.setattr(rw_module, 'load_cam_file', fail)
    again = make_hook(ex)
    run_hook(again, ex.samples)
    assert (mtimes(ex.rw_dir), mtimes(ex.crf_dir)) == before
    assert sorted(again._skipped) == sorted(ex.ids) and not again._written
    monkeypatch.undo()

    # only a missing output is redone; the existing one is left alone
    os.remove(osp.join(ex.crf_dir, ex.ids[1] + '.png'))
    third = make_hook(ex)
    run_hook(third, ex.samples)
    assert third._written == [ex.ids[1]]
    assert mtimes(ex.rw_dir) == before[0]
    rw, crf = expected_labels(
        osp.join(ex.cam_dir, ex.ids[1] + '.npz'), ex.items[1][0],
        ex.items[1][3])
    np.testing.assert_array_equal(
        load_label_png(osp.join(ex.crf_dir, ex.ids[1] + '.png')), crf)


def test_without_crf_only_rw_labels_are_written(exported):
    ex = exported
    hook = RandomWalkHook(
        cam_dir=ex.cam_dir, out_dir=ex.rw_dir, steps=16, beta=4)
    run_hook(hook, ex.samples[-2:])
    assert sorted(os.listdir(ex.rw_dir)) == sorted(i + '.png'
                                                   for i in ex.ids[-2:])
    assert not osp.exists(ex.crf_dir)
    img_path, shape, labels, aff = ex.items[-1]
    cams, ids = load_cam_file(osp.join(ex.cam_dir, 'odd_001.npz'))
    expected = scores_to_label(
        propagate_cams(torch.from_numpy(cams), aff, steps=16, beta=4),
        ids.tolist()).numpy()
    np.testing.assert_array_equal(
        load_label_png(osp.join(ex.rw_dir, 'odd_001.png')), expected)


def test_interrupted_writes_leave_no_partial_file(exported, monkeypatch):
    ex = exported
    real_save = PIL.Image.Image.save

    def save_half_then_fail(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        with open(fp, 'r+b') as f:  # a truncated file on disk ...
            f.truncate(20)
        raise OSError('disk full')  # ... and the writer dies

    monkeypatch.setattr(PIL.Image.Image, 'save', save_half_then_fail)
    with pytest.raises(RuntimeError, match=f'image {ex.ids[0]} .*disk full'):
        run_hook(make_hook(ex), ex.samples[:1])
    assert os.listdir(ex.rw_dir) == []  # no <id>.png, no temp file
    assert not osp.exists(ex.crf_dir) or os.listdir(ex.crf_dir) == []
    monkeypatch.undo()

    # the CRF fails: neither label of that image is written
    def crf_fails(*args, **kwargs):
        raise MemoryError('CRF killed')

    import mmaff.ops.crf as crf_module  # crf_label looks it up there
    monkeypatch.setattr(crf_module, 'dense_crf', crf_fails)
    with pytest.raises(RuntimeError, match='CRF killed'):
        run_hook(make_hook(ex), ex.samples[:1])
    assert os.listdir(ex.rw_dir) == []
    assert not osp.exists(ex.crf_dir) or os.listdir(ex.crf_dir) == []
    monkeypatch.undo()
    # and a rerun completes the export
    run_hook(make_hook(ex), ex.samples[:1])
    assert os.listdir(ex.rw_dir) == [ex.ids[0] + '.png']
    assert os.listdir(ex.crf_dir) == [ex.ids[0] + '.png']


def test_missing_cam_file_is_named(exported):
    ex = exported
    missing = osp.join(ex.cam_dir, ex.ids[2] + '.npz')
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        run_hook(make_hook(ex), ex.samples)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        run_hook(make_hook(ex, num_workers=1), ex.samples)


def test_bad_samples_are_named(exported):
    ex = exported
    img_path, shape, labels, aff = ex.items[0]
    wrong_grid = fake_sample(img_path, shape, labels, aff[:, :-1])
    with pytest.raises(RuntimeError, match=f'image {ex.ids[0]}.*grid'):
        run_hook(make_hook(ex), [wrong_grid])
    with pytest.raises(RuntimeError, match=f'image {ex.ids[0]}.*grid'):
        run_hook(make_hook(ex, num_workers=1), [wrong_grid])
    # a CAM for a class the image does not have
    other = fake_sample(img_path, shape, (3, ), aff)
    with pytest.raises(RuntimeError, match='absent from the image labels'):
        run_hook(make_hook(ex), [other])
    no_labels = SegDataSample(
        metainfo=dict(img_path=img_path, ori_shape=shape))
    with pytest.raises(KeyError, match='img_labels'):
        run_hook(make_hook(ex), [no_labels])
    assert not osp.exists(ex.rw_dir)


def test_worker_error_is_reraised_naming_the_image(exported):
    ex = exported
    bad = osp.join(ex.cam_dir, ex.ids[3] + '.npz')
    with open(bad, 'wb') as f:
        f.write(b'not a zip archive')
    with pytest.raises(
            RuntimeError, match=f'image {ex.ids[3]} .*corrupt CAM file'):
        run_hook(make_hook(ex, num_workers=2), ex.samples)


def test_summary_counts_per_rank_and_warns_on_duplicates(
        exported, monkeypatch):
    ex = exported
    logs = []
    monkeypatch.setattr(
        rw_module,
        'print_log',
        lambda msg, logger=None, level=None: logs.append((msg, level)))
    # a fake second rank that wrote ids[0] too and skipped one image
    monkeypatch.setattr(rw_module, 'get_world_size', lambda: 2)
    monkeypatch.setattr(
        rw_module, 'all_gather_object',
        lambda obj: [obj, ([ex.ids[0], 'other'], ['done_before'])])
    run_hook(make_hook(ex, steps=4), ex.samples[:2])
    (summary, _), (warning, level) = logs
    assert re.search(
        r'RandomWalkHook: 5 images, 4 written to .*, 1 skipped .*'
        r'written per rank \[2, 2\], skipped per rank \[0, 1\]', summary)
    assert level == logging.WARNING
    assert f'1 images were processed more than once (e.g. {ex.ids[0]})' \
        in warning and 'round_up=False' in warning


@pytest.mark.parametrize('kwargs', [
    dict(beta=0),
    dict(beta=-2.0),
    dict(alpha=float('inf')),
    dict(steps=0),
    dict(radius=0),
    dict(num_workers=-1),
    dict(crf=dict(sxy=3)),
    dict(start_method='threads'),
    dict(out_dir='')
])
def test_bad_arguments(exported, kwargs):
    args = dict(cam_dir=exported.cam_dir, out_dir=exported.rw_dir)
    args.update(kwargs)
    with pytest.raises(ValueError):
        RandomWalkHook(**args)


def test_workers_give_the_same_bytes_as_inline(exported, tmp_path,
                                               monkeypatch):
    ex = exported

    def export(folder, **kw):
        hook = RandomWalkHook(
            cam_dir=ex.cam_dir,
            out_dir=str(tmp_path / folder / 'rw'),
            crf_out_dir=str(tmp_path / folder / 'crf'),
            crf=dict(iterations=5),
            **kw)
        seen = {}

        def check():  # after the last iteration, before after_test_epoch
            seen['rw'] = sorted(os.listdir(hook.out_dir))

        run_hook(hook, ex.samples, before_epoch_end=check)
        # the evaluator runs before after_test_epoch: all must be written
        assert seen['rw'] == sorted(i + '.png' for i in ex.ids)
        assert hook._pool is None
        out = {}
        for sub in ('rw', 'crf'):
            for name in os.listdir(tmp_path / folder / sub):
                out[sub, name] = (tmp_path / folder / sub / name).read_bytes()
        return out

    inline = export('inline')
    assert len(inline) == 2 * len(ex.ids)
    assert export('fork2', num_workers=2, max_pending=1) == inline
    assert export('spawn1', num_workers=1, start_method='spawn') == inline
    # affinities on a GPU: the walk runs in the main process, the workers
    # get the scores (forced here on CPU tensors)
    monkeypatch.setattr(RandomWalkHook, '_walk_here',
                        staticmethod(lambda affinity: True))
    assert export('walk_here', num_workers=1) == inline


# -- configs ----------------------------------------------------------------


def test_affinitynet_config_has_the_stage4_test_side():
    cfg = Config.fromfile(
        osp.join(
            REPO, 'configs/affinitynet/'
            'affinitynet_resnet38d_4xb2-8e_voc12aug-448x448.py'))
    loader = cfg.test_dataloader
    assert loader.sampler.round_up is False and loader.sampler.shuffle is False
    assert loader.batch_size == 1
    assert loader.dataset.type == 'VOCImageLabelDataset'
    assert 'img_labels' in loader.dataset.pipeline[-1].meta_keys
    assert cfg.model.data_preprocessor.test_cfg.size_divisor == 8
    hooks = [h for h in cfg.custom_hooks if h.type == 'RandomWalkHook']
    assert len(hooks) == 1
    resolve_handovers(cfg)
    hook = HOOKS.build(cfg.custom_hooks[cfg.custom_hooks.index(hooks[0])])
    root = 'work_dirs/affinitynet_resnet38d_voc12aug'
    assert hook.out_dir == f'{root}/pseudo_rw'
    assert hook.crf_out_dir == f'{root}/pseudo_rw_crf'
    assert hook.cam_dir == f'{root}/cams'
    metric = METRICS.build(cfg.test_evaluator)
    assert metric.methods == ['CAM', 'RW', 'RW+dCRF']
    assert metric.label_dirs == {
        'RW': hook.out_dir,
        'RW+dCRF': hook.crf_out_dir
    }
    assert metric.cam_dir == hook.cam_dir


# -- through mmengine's Runner ---------------------------------------------


def tiny_affinitynet():
    return dict(
        type='AffinityNet',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            size_divisor=8,
            pad_val=0,
            seg_pad_val=255,
            test_cfg=dict(size_divisor=8)),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=8,
            base_channels=8,
            num_stages=4,
            out_indices=(1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            contract_dilation=True),
        aff_head=dict(
            type='AffinityHead',
            in_channels=(16, 32, 64),
            channels=(8, 8, 16),
            out_channels=16))


def runner_cfg(tiny_voc, work, num_workers):
    return dict(
        default_scope='mmaff',
        work_dir=work,
        model=tiny_affinitynet(),
        test_dataloader=dict(
            batch_size=1,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
            dataset=dict(
                type='VOCImageLabelDataset',
                data_root=tiny_voc.root,
                data_prefix=dict(
                    img_path='JPEGImages', seg_map_path='SegmentationClass'),
                ann_file='ImageSets/Segmentation/train.txt',
                label_source='xml',
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations'),
                    dict(type='PackSegInputs', meta_keys=META_KEYS)
                ])),
        test_evaluator=dict(
            type='PseudoLabelMetric',
            cam_dir=f'{work}/cams',
            label_dirs={
                'RW': f'{work}/rw',
                'RW+dCRF': f'{work}/rw_crf'
            }),
        test_cfg=dict(type='TestLoop'),
        custom_hooks=[
            dict(
                type='RandomWalkHook',
                cam_dir=f'{work}/cams',
                out_dir=f'{work}/rw',
                crf_out_dir=f'{work}/rw_crf',
                num_workers=num_workers)
        ],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0))


def iou_by_sets(pred, gt, num_classes):
    """Per-class IoU straight from the definition, with pixel sets."""
    valid = gt != 255
    ious = []
    for c in range(num_classes):
        p, g = (pred == c) & valid, (gt == c) & valid
        union = (p | g).sum()
        ious.append((p & g).sum() / union if union else np.nan)
    return np.array(ious)


def test_runner_test_exports_and_scores(tiny_voc, tmp_path):
    from mmengine.runner import Runner
    work = str(tmp_path / 'work')
    split = tiny_voc.splits['train']
    for k, img_id in enumerate(split):
        write_cams(f'{work}/cams', img_id, tiny_voc.labels[img_id],
                   tiny_voc.img_shape, k)
    runner = Runner.from_cfg(Config(runner_cfg(tiny_voc, work, 1)))
    metrics = runner.test()
    names = sorted(i + '.png' for i in split)
    assert sorted(os.listdir(f'{work}/rw')) == names
    assert sorted(os.listdir(f'{work}/rw_crf')) == names

    # the same model's affinities, propagated by hand
    model = runner.model.eval()
    preds = {}
    with torch.no_grad():
        for batch in runner.test_dataloader:
            for sample in model.test_step(batch):
                img_id = osp.splitext(osp.basename(sample.img_path))[0]
                assert sample.pred_affinity.data.shape[-2:] == (5, 7)
                preds[img_id] = sample.pred_affinity.data
    assert sorted(preds) == sorted(split)
    rw_iou = np.zeros((len(split), 21))
    for n, img_id in enumerate(split):
        rw, crf = expected_labels(f'{work}/cams/{img_id}.npz',
                                  tiny_voc.path('JPEGImages', img_id + '.jpg'),
                                  preds[img_id])
        got = load_label_png(f'{work}/rw/{img_id}.png')
        np.testing.assert_array_equal(got, rw)
        np.testing.assert_array_equal(
            load_label_png(f'{work}/rw_crf/{img_id}.png'), crf)
        rw_iou[n] = iou_by_sets(got, tiny_voc.masks[img_id], 21)

    assert set(metrics) == {'CAM/mIoU', 'RW/mIoU', 'RW+dCRF/mIoU'}
    # pixel sets pooled over the images == the metric's confusion sums
    pred_all = np.concatenate(
        [load_label_png(f'{work}/rw/{i}.png').ravel() for i in split])
    gt_all = np.concatenate([tiny_voc.masks[i].ravel() for i in split])
    expected = np.nanmean(iou_by_sets(pred_all, gt_all, 21)) * 100
    assert metrics['RW/mIoU'] == pytest.approx(round(expected, 2))


# -- 2 processes, tools/dist_test.sh ---------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_test_two_processes_write_each_image_once(tiny_voc, tmp_path):
    from mmaff.registry import MODELS
    work = str(tmp_path / 'work')
    split = tiny_voc.splits['train']
    for k, img_id in enumerate(split):
        write_cams(f'{work}/cams', img_id, tiny_voc.labels[img_id],
                   tiny_voc.img_shape, k)
    cfg = runner_cfg(tiny_voc, work, num_workers=1)
    cfg.pop('work_dir')  # --work-dir
    cfg['custom_imports'] = dict(imports=['mmaff'], allow_failed_imports=False)
    cfg_path = tmp_path / 'aff_tiny.py'
    Config(cfg).dump(str(cfg_path))
    torch.manual_seed(0)
    model = MODELS.build(tiny_affinitynet())
    ckpt = str(tmp_path / 'aff_tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)

    env = dict(
        os.environ,
        PORT=str(_free_port()),
        PYTHON=sys.executable,
        PYTHONWARNINGS='ignore',
        OMP_NUM_THREADS='1')
    proc = subprocess.run([
        'bash', 'tools/dist_test.sh',
        str(cfg_path), ckpt, '2', '--work-dir', work
    ],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    names = sorted(i + '.png' for i in split)
    assert sorted(os.listdir(f'{work}/rw')) == names  # each exactly once
    assert sorted(os.listdir(f'{work}/rw_crf')) == names
    # rank 0 logs what every rank wrote: shares that add up to the set
    m = re.search(
        r'RandomWalkHook: (\d+) images, (\d+) written.*'
        r'written per rank \[(\d+), (\d+)\], '
        r'skipped per rank \[(\d+), (\d+)\]', out)
    assert m, out[-4000:]
    total, written, r0, r1, s0, s1 = map(int, m.groups())
    assert total == written == r0 + r1 == len(split)
    assert r0 > 0 and r1 > 0 and s0 == s1 == 0
    assert 'processed more than once' not in out
    assert re.search(r'RW\+dCRF/mIoU: \d+\.\d+', out), out[-3000:]
    # the checkpoint's model, run here, gives the same labels
    from mmengine.runner import Runner
    local = Runner.from_cfg(
        Config(runner_cfg(tiny_voc, str(tmp_path / 'local'), 0)))
    local.model.load_state_dict(model.state_dict())
    local.model.eval()
    with torch.no_grad():
        for batch in local.test_dataloader:
            for sample in local.model.test_step(batch):
                img_id = osp.splitext(osp.basename(sample.img_path))[0]
                rw, _ = expected_labels(
                    f'{work}/cams/{img_id}.npz',
                    sample.img_path,
                    sample.pred_affinity.data,
                    crf=False)
                np.testing.assert_array_equal(
                    load_label_png(f'{work}/rw/{img_id}.png'), rw)


def test_stale_temp_files_are_removed_at_the_start(exported, monkeypatch):
    """A killed run's temporary files (dead writer) go; live ones stay."""
    from mmaff.utils import io as mio
    ex = exported
    logs = []
    monkeypatch.setattr(
        rw_module,
        'print_log',
        lambda msg, logger=None, level=None: logs.append(msg))
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    host = mio._host_tag()
    planted = {}
    for folder in (ex.rw_dir, ex.crf_dir):
        os.makedirs(folder)
        stale = osp.join(folder, f'.{ex.ids[0]}.tmp-{host}-{dead.pid}-x.png')
        live = osp.join(folder, f'.{ex.ids[1]}.tmp-{host}-{os.getpid()}-y.png')
        for path in (stale, live):
            with open(path, 'wb') as f:
                f.write(b'partial')
        planted[folder] = (stale, live)
    hook = make_hook(ex, steps=4)
    hook.before_test_epoch(SimpleNamespace(test_dataloader=[]))
    for folder, (stale, live) in planted.items():
        assert os.listdir(folder) == [osp.basename(live)]
        assert (f'RandomWalkHook: removed 1 temporary files of an '
                f'interrupted run from {folder}') in logs
        os.remove(live)
    # a whole run leaves only the outputs
    with open(planted[ex.rw_dir][0], 'wb') as f:
        f.write(b'partial')
    run_hook(make_hook(ex, steps=4), ex.samples[:1])
    assert os.listdir(ex.rw_dir) == [ex.ids[0] + '.png']
    assert os.listdir(ex.crf_dir) == [ex.ids[0] + '.png']
