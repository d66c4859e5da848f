# Copyright (c) mmaff contributors. All rights reserved.
"""Stage 4's files: RandomWalkHook writes what the model's walk predicts.

AffinityNet walks the CAMs (``LoadCAMs`` in the test pipeline) and returns
``pred_sem_seg`` / ``seg_logits``; the hook writes the RW labels and the
RW + dCRF labels. Tested here: the hook driven directly with fake model
outputs (files, resuming, atomic writes, errors, workers, the distributed
summary), the stage-4 test side of the shipped configs, and the whole test
run through ``tools/test.py`` and a 2-process gloo ``tools/dist_test.sh``
with a tiny AffinityNet on the tiny VOC fixture.
"""
import json
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
from mmengine.dataset import pseudo_collate
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.engine.hooks import RandomWalkHook
from mmaff.engine.hooks import export_hook as export_module
from mmaff.models.segmentors.affinitynet import WALK_KEYS
from mmaff.ops import dense_crf, propagate_cams, scores_to_label
from mmaff.registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS
from mmaff.utils import register_all_modules
from mmaff.utils.handover import resolve_handovers
from mmaff.utils.io import load_cam_file, load_label_png, save_cam_file
from mmaff_testing import DEMO_AFF, folder_bytes, mtimes, run_hook

register_all_modules()

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
AFF_CONFIG = osp.join(
    REPO, 'configs/affinitynet/'
    'affinitynet_resnet38d_4xb2-8e_voc12aug-448x448.py')
DEMO_CONFIG = osp.join(REPO, DEMO_AFF)
#: Non-default dCRF settings: the hook must pass them on.
CRF = dict(bilateral_sxy=20, iterations=5)

# -- fake model outputs and the labels expected from them -----------------


def smooth_scores(labels, shape, seed):
    """(K + 1, H, W) positive walk-like scores, background first.

    Smooth blobs times a per-pixel factor: unnormalised, many exceed 1, so
    the dCRF's clipping at 1 tells normalised scores from raw ones.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    blobs = [
        np.exp(-((yy - rng.uniform(0, h))**2 + (xx - rng.uniform(0, w))**2) /
               (2 * (w / 4)**2)) for _ in labels
    ]
    fg = np.stack(blobs) if blobs else np.zeros((0, h, w))
    bg = (1 - fg.max(0, initial=0))**2 + 0.05
    scores = np.concatenate([bg[None], fg]) * rng.uniform(0.3, 4.0, (h, w))
    return torch.from_numpy(scores.astype(np.float32))


def walked_sample(img_path, shape, labels, seed):
    """A test sample as AffinityNet returns it after the walk."""
    scores = smooth_scores(labels, shape, seed)
    sample = SegDataSample(
        metainfo=dict(
            img_path=img_path,
            ori_shape=shape,
            img_shape=shape,
            img_labels=tuple(labels),
            score_labels=[0, *labels]))
    sample.seg_logits = PixelData(data=scores)
    sample.pred_sem_seg = PixelData(
        data=scores_to_label(scores, list(labels))[None])
    return sample


def read_rgb_cv2(path):
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def expected_crf(img_path, scores, label_ids, **crf):
    """RW + dCRF from its definition: scores normalised per pixel, the dense
    CRF on the RGB image, argmax mapped to label ids."""
    scores = np.asarray(scores, dtype=np.float64)
    probs = (scores / scores.sum(0, keepdims=True)).astype(np.float32)
    q = dense_crf(read_rgb_cv2(img_path), probs, **crf)
    return np.array([0, *label_ids])[q.argmax(0)]


@pytest.fixture
def walked(tiny_voc, tmp_path):
    """Walked samples of every tiny_voc image (img_005: no class) and of
    one extra 37 x 50 image (not a multiple of the stride)."""
    items = [(tiny_voc.path('JPEGImages', i + '.jpg'), tiny_voc.img_shape,
              tiny_voc.labels[i]) for i in tiny_voc.ids]
    odd_path = str(tmp_path / 'odd' / 'odd_001.jpg')
    os.makedirs(osp.dirname(odd_path))
    rng = np.random.default_rng(7)
    cv2.imwrite(odd_path, rng.integers(0, 256, (37, 50, 3), dtype=np.uint8))
    items.append((odd_path, (37, 50), (4, 9)))
    return SimpleNamespace(
        samples=[walked_sample(*item, k) for k, item in enumerate(items)],
        ids=[osp.splitext(osp.basename(i[0]))[0] for i in items],
        rw_dir=str(tmp_path / 'rw'),
        crf_dir=str(tmp_path / 'rw_crf'))


def make_hook(ex, **kw):
    kw.setdefault('refiner', dict(type='DenseCRF', **CRF))
    return RandomWalkHook(out_dir=ex.rw_dir, crf_out_dir=ex.crf_dir, **kw)


@pytest.fixture
def logs(monkeypatch):
    """The hooks' log lines: (message, level)."""
    lines = []
    monkeypatch.setattr(
        export_module,
        'print_log',
        lambda msg, logger=None, level=None: lines.append((msg, level)))
    return lines


def check_files(ex, samples, ids):
    """The files of ``ids``: RW = pred_sem_seg, RW + dCRF = by hand."""
    for sample, img_id in zip(samples, ids):
        shape = sample.ori_shape
        rw = load_label_png(osp.join(ex.rw_dir, img_id + '.png'), shape)
        np.testing.assert_array_equal(rw, sample.pred_sem_seg.data[0].numpy())
        crf = load_label_png(osp.join(ex.crf_dir, img_id + '.png'), shape)
        np.testing.assert_array_equal(
            crf,
            expected_crf(sample.img_path, sample.seg_logits.data,
                         sample.img_labels, **CRF))
        assert set(np.unique(crf)) <= {0, *sample.img_labels}


# -- the hook, driven directly ---------------------------------------------


def test_fake_scores_tell_normalised_from_raw(walked):
    """The fixture is sharp enough for the checks below: normalising, and
    the config's crf settings, change some dCRF label."""
    sample = walked.samples[2]
    label_ids = sample.img_labels
    raw = dense_crf(
        read_rgb_cv2(sample.img_path), sample.seg_logits.data.numpy(), **CRF)
    raw = np.array([0, *label_ids])[raw.argmax(0)]
    normalised = expected_crf(sample.img_path, sample.seg_logits.data,
                              label_ids, **CRF)
    default = expected_crf(sample.img_path, sample.seg_logits.data, label_ids)
    assert (raw != normalised).any()
    assert (default != normalised).any()


def test_hook_writes_expected_files_then_skips_them(walked, logs, monkeypatch):
    ex = walked
    hook = make_hook(ex)
    run_hook(hook, ex.samples)
    names = sorted(i + '.png' for i in ex.ids)
    assert sorted(os.listdir(ex.rw_dir)) == names  # no temp files either
    assert sorted(os.listdir(ex.crf_dir)) == names
    check_files(ex, ex.samples, ex.ids)
    empty = ex.ids.index('img_005')  # no class: all background
    assert not load_label_png(osp.join(ex.rw_dir, 'img_005.png')).any()
    assert not load_label_png(osp.join(ex.crf_dir, 'img_005.png')).any()
    assert ex.samples[empty].img_labels == ()
    assert sorted(hook._written) == sorted(ex.ids) and not hook._skipped
    assert logs[-1][0].startswith(
        f'RandomWalkHook: 7 images, 7 written to {ex.rw_dir} and '
        f'{ex.crf_dir}, 0 skipped (files exist) in ')

    # second run: everything exists, nothing is computed or rewritten
    before = mtimes(ex.rw_dir), mtimes(ex.crf_dir)

    def fail(*args, **kwargs):
        raise AssertionError('finished images must be skipped')

    with monkeypatch.context() as patch:
        patch.setattr(RandomWalkHook, 'job', fail)
        patch.setattr(RandomWalkHook, 'worker', staticmethod(fail))
        again = make_hook(ex)
        run_hook(again, ex.samples)
    assert (mtimes(ex.rw_dir), mtimes(ex.crf_dir)) == before
    assert sorted(again._skipped) == sorted(ex.ids) and not again._written
    assert logs[-1][0].startswith('RandomWalkHook: 7 images, 0 written to ')
    assert '7 skipped (files exist) (overwrite=True rewrites them)' \
        in logs[-1][0]

    # only a missing output is redone; the image's other one is left alone
    os.remove(osp.join(ex.crf_dir, ex.ids[1] + '.png'))
    third = make_hook(ex)
    run_hook(third, ex.samples)
    assert third._written == [ex.ids[1]]
    assert mtimes(ex.rw_dir) == before[0]
    redone = ex.ids[1] + '.png'
    others = {k: v for k, v in before[1].items() if k != redone}
    assert {
        k: v
        for k, v in mtimes(ex.crf_dir).items() if k != redone
    } == others
    check_files(ex, ex.samples[1:2], ex.ids[1:2])

    assert logs[-1][0].startswith('RandomWalkHook: 7 images, 1 written to ')

    # overwrite=True rewrites every file, from the new predictions
    other = [
        walked_sample(s.img_path, s.ori_shape, s.img_labels, 100 + k)
        for k, s in enumerate(ex.samples)
    ]
    old = folder_bytes(ex.rw_dir)
    run_hook(make_hook(ex, overwrite=True), other)
    check_files(ex, other, ex.ids)
    assert folder_bytes(ex.rw_dir) != old


def test_without_crf_only_rw_labels_are_written(walked):
    ex = walked
    # no seg_logits needed: a sample without them is fine
    samples = ex.samples[-2:]
    for sample in samples:
        del sample.seg_logits
    run_hook(RandomWalkHook(out_dir=ex.rw_dir), samples)
    assert sorted(os.listdir(ex.rw_dir)) == sorted(i + '.png'
                                                   for i in ex.ids[-2:])
    assert not osp.exists(ex.crf_dir)
    for sample, img_id in zip(samples, ex.ids[-2:]):
        np.testing.assert_array_equal(
            load_label_png(osp.join(ex.rw_dir, img_id + '.png')),
            sample.pred_sem_seg.data[0].numpy())


def test_interrupted_writes_leave_no_partial_file(walked, monkeypatch):
    ex = walked
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
    hook = make_hook(ex)  # (its crf options are checked against dense_crf)
    monkeypatch.setattr(crf_module, 'dense_crf', crf_fails)
    with pytest.raises(RuntimeError, match=f'image {ex.ids[0]} .*CRF killed'):
        run_hook(hook, ex.samples[:1])
    assert os.listdir(ex.rw_dir) == []
    assert not osp.exists(ex.crf_dir) or os.listdir(ex.crf_dir) == []
    monkeypatch.undo()
    # and a rerun completes the export
    run_hook(make_hook(ex), ex.samples[:1])
    assert os.listdir(ex.rw_dir) == [ex.ids[0] + '.png']
    assert os.listdir(ex.crf_dir) == [ex.ids[0] + '.png']
    check_files(ex, ex.samples[:1], ex.ids[:1])


def test_stale_temp_files_are_removed_at_the_start(walked, logs):
    """A killed run's temporary files (dead writer) go; live ones stay."""
    from mmaff.utils import io as mio
    ex = walked
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
    make_hook(ex).before_test_epoch(SimpleNamespace(test_dataloader=[]))
    messages = [msg for msg, _ in logs]
    for folder, (stale, live) in planted.items():
        assert os.listdir(folder) == [osp.basename(live)]
        assert (f'RandomWalkHook: removed 1 temporary files of an '
                f'interrupted run from {folder}') in messages
        os.remove(live)
    # a whole run leaves only the outputs
    with open(planted[ex.rw_dir][0], 'wb') as f:
        f.write(b'partial')
    run_hook(make_hook(ex), ex.samples[:1])
    assert os.listdir(ex.rw_dir) == [ex.ids[0] + '.png']
    assert os.listdir(ex.crf_dir) == [ex.ids[0] + '.png']


# -- errors and arguments ---------------------------------------------------


@pytest.mark.parametrize('num_workers', [0, 1])
def test_samples_without_the_walk_are_named(walked, num_workers):
    ex = walked
    good = ex.samples[0]
    img_path, shape = good.img_path, good.ori_shape
    # the model ran without LoadCAMs: affinities only
    no_walk = SegDataSample(
        metainfo=dict(img_path=img_path, ori_shape=shape, img_labels=(15, )))
    no_walk.pred_affinity = PixelData(data=torch.rand(34, 5, 7))
    # a walk without its labels
    no_labels = SegDataSample(
        metainfo=dict(img_path=img_path, ori_shape=shape),
        pred_sem_seg=good.pred_sem_seg,
        seg_logits=good.seg_logits)
    # the CRF needs the scores
    no_scores = SegDataSample(
        metainfo=dict(img_path=img_path, ori_shape=shape, score_labels=[0]),
        pred_sem_seg=good.pred_sem_seg)
    for bad, what in ((no_walk, 'LoadCAMs'), (no_labels, 'LoadCAMs'),
                      (no_scores, 'seg_logits')):
        # after two good images (queued in the pool with a worker)
        hook = make_hook(ex, num_workers=num_workers)
        with pytest.raises(
                RuntimeError,
                match=f'RandomWalkHook: image {ex.ids[0]} .*{what}'):
            run_hook(hook, [*ex.samples[1:3], bad], batch_size=3)
        assert hook._pool is None  # the pool is shut down
        for folder in (ex.rw_dir, ex.crf_dir):
            assert not osp.exists(osp.join(folder, ex.ids[0] + '.png'))


@pytest.mark.parametrize('num_workers', [0, 2])
def test_worker_errors_are_reraised_naming_the_image(walked, num_workers):
    """Errors of the writing itself (in a worker process with workers)."""
    ex = walked
    # an image that is gone: neither of its labels is written
    os.remove(ex.samples[3].img_path)
    hook = make_hook(ex, num_workers=num_workers)
    with pytest.raises(
            RuntimeError,
            match=rf'RandomWalkHook: image {ex.ids[3]} \(.*{ex.ids[3]}\.jpg\) '
            'failed: FileNotFoundError'):
        run_hook(hook, ex.samples)
    assert hook._pool is None  # the pool is shut down
    for folder in (ex.rw_dir, ex.crf_dir):
        assert ex.ids[3] + '.png' not in os.listdir(folder)
    # an image that cannot be decoded
    with open(ex.samples[2].img_path, 'wb') as f:
        f.write(b'not a jpeg')
    with pytest.raises(RuntimeError, match=f'image {ex.ids[2]} '):
        run_hook(
            make_hook(ex, num_workers=num_workers, overwrite=True),
            ex.samples[2:3])
    # scores of another size than the image
    wrong = walked_sample(ex.samples[1].img_path, (40, 48),
                          ex.samples[1].img_labels, 1)
    with pytest.raises(
            RuntimeError, match=f'image {ex.ids[1]} .*does not match'):
        run_hook(
            make_hook(ex, num_workers=num_workers, overwrite=True), [wrong])


@pytest.mark.parametrize('kwargs', [
    dict(num_workers=-1),
    dict(num_workers=1.5),
    dict(num_workers=True),
    dict(crf=dict(sxy=3)),
    dict(start_method='threads'),
    dict(out_dir=''),
])
def test_bad_arguments(tmp_path, kwargs):
    args = dict(out_dir=str(tmp_path / 'rw'))
    args.update(kwargs)
    with pytest.raises(ValueError):
        RandomWalkHook(**args)


@pytest.mark.parametrize(
    'old', ['cam_dir', 'alpha', 'beta', 'steps', 'radius', 'stride'])
def test_walk_arguments_of_old_configs_are_refused(tmp_path, old):
    """The walk is the model's now (``model.test_cfg``): an old config that
    gives the hook walk settings fails instead of silently ignoring them."""
    with pytest.raises(TypeError, match=old):
        RandomWalkHook(out_dir=str(tmp_path / 'rw'), **{old: 1})


# -- workers and the distributed summary -------------------------------------


def test_workers_give_the_same_bytes_as_inline(walked, tmp_path):
    ex = walked

    def export(folder, **kw):
        hook = RandomWalkHook(
            out_dir=str(tmp_path / folder / 'rw'),
            crf_out_dir=str(tmp_path / folder / 'crf'),
            refiner=dict(type='DenseCRF', **CRF),
            **kw)
        seen = {}

        def check():  # after the last iteration, before after_test_epoch
            seen['rw'] = sorted(os.listdir(hook.out_dir))
            seen['crf'] = sorted(os.listdir(hook.crf_out_dir))
            seen['pool'] = hook._pool

        run_hook(hook, ex.samples, before_epoch_end=check)
        # the evaluator runs before after_test_epoch: all must be written
        names = sorted(i + '.png' for i in ex.ids)
        assert seen == dict(rw=names, crf=names, pool=None)
        assert sorted(hook._written) == sorted(ex.ids)
        return {
            sub: folder_bytes(str(tmp_path / folder / sub))
            for sub in ('rw', 'crf')
        }

    inline = export('inline')
    assert len(inline['rw']) == len(inline['crf']) == len(ex.ids)
    assert export('fork2', num_workers=2, max_pending=1) == inline
    assert export('spawn1', num_workers=1, start_method='spawn') == inline


def test_summary_counts_per_rank_and_warns_on_duplicates(
        walked, logs, monkeypatch):
    ex = walked
    # a fake second rank that wrote ids[0] too and skipped one image
    monkeypatch.setattr(export_module, 'get_world_size', lambda: 2)
    monkeypatch.setattr(
        export_module, 'all_gather_object',
        lambda obj: [obj, ([ex.ids[0], 'other'], ['done_before'])])
    run_hook(make_hook(ex), ex.samples[:2])
    (summary, _), (warning, level) = logs
    assert re.search(
        r'RandomWalkHook: 5 images, 4 written to .*, 1 skipped .*'
        r'on rank 0\); written per rank \[2, 2\], skipped per rank \[0, 1\]',
        summary), summary
    assert level == logging.WARNING
    assert f'1 images were handled more than once (e.g. {ex.ids[0]})' \
        in warning and 'round_up=False' in warning

    # no duplicate: no warning
    logs.clear()
    monkeypatch.setattr(export_module, 'all_gather_object',
                        lambda obj: [obj, (['other'], [])])
    run_hook(make_hook(ex, overwrite=True), ex.samples[:2])
    assert len(logs) == 1 and 'written per rank [2, 1]' in logs[0][0]


# -- the configs' stage-4 test side ------------------------------------------


@pytest.mark.parametrize(
    'config, walk, num_workers, threshold, root',
    [(AFF_CONFIG, dict(alpha=16, beta=8, steps=256), 2, 0.2,
      'work_dirs/affinitynet_resnet38d_voc12aug'),
     (DEMO_CONFIG, dict(alpha=2, beta=8, steps=4), 0, 0.45, 'work_dirs/demo')],
    ids=['affinitynet', 'demo'])
def test_config_has_the_stage4_test_side(config, walk, num_workers, threshold,
                                         root):
    cfg = Config.fromfile(config)
    resolve_handovers(cfg)
    handovers = cfg.handovers
    assert handovers['cams'] == f'{root}/cams'
    loader = cfg.test_dataloader
    assert loader.sampler.round_up is False and loader.sampler.shuffle is False
    assert loader.batch_size == 1
    assert loader.dataset.type == 'VOCImageLabelDataset'
    # the CAM files come with each image, after it, into the metainfo
    types = [t['type'] for t in loader.dataset.pipeline]
    assert types == [
        'LoadImageFromFile', 'LoadAnnotations', 'LoadCAMs', 'PackSegInputs'
    ]
    load_cams = TRANSFORMS.build(loader.dataset.pipeline[2])
    assert load_cams.cam_dir == handovers['cams']
    assert {'img_labels', 'cams',
            'cam_labels'} <= set(loader.dataset.pipeline[-1].meta_keys)
    # the model walks with the config's settings
    assert cfg.model.type == 'AffinityNet'
    assert dict(cfg.model.test_cfg) == walk
    assert set(walk) <= set(WALK_KEYS)
    assert cfg.model.data_preprocessor.test_cfg.size_divisor == 8
    # the hook writes the hand-overs
    hooks = [h for h in cfg.custom_hooks if h.type == 'RandomWalkHook']
    assert len(hooks) == 1
    hook = HOOKS.build(hooks[0])
    assert hook.out_dir == handovers['pseudo_rw'] == f'{root}/pseudo_rw'
    assert hook.crf_out_dir == handovers['pseudo_rw_crf'] == \
        f'{root}/pseudo_rw_crf'
    assert hook.num_workers == num_workers
    # one table: CAM, RW (pred_sem_seg), RW + dCRF (the hook's files)
    metric = METRICS.build(cfg.test_evaluator)
    assert metric.methods == ['CAM', 'RW', 'RW+dCRF']
    assert metric.label_dirs == {'RW+dCRF': hook.crf_out_dir}
    assert metric.cam_bg_threshold == threshold == \
        handovers['cam_bg_threshold']

    # handover_root moves every stage-4 folder
    moved = Config.fromfile(config)
    moved.merge_from_dict(dict(handover_root='/elsewhere'))
    resolve_handovers(moved)
    assert moved.test_dataloader.dataset.pipeline[2].cam_dir == \
        '/elsewhere/cams'
    hook = [h for h in moved.custom_hooks if h.type == 'RandomWalkHook'][0]
    assert (hook.out_dir, hook.crf_out_dir) == ('/elsewhere/pseudo_rw',
                                                '/elsewhere/pseudo_rw_crf')
    assert moved.test_evaluator.label_dirs == {
        'RW+dCRF': '/elsewhere/pseudo_rw_crf'
    }


# -- end to end: tools/test.py and tools/dist_test.sh -------------------------

#: A tiny AffinityNet in the shipped stage-4 config (test side unchanged).
TINY_CONFIG = """_base_ = [{base!r}]
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=18,
        stem_channels=8,
        base_channels=8,
        num_stages=4,
        out_indices=(1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        contract_dilation=True),
    aff_head=dict(in_channels=(16, 32, 64), channels=(8, 8, 16),
                  out_channels=16))
test_dataloader = dict(
    num_workers=0, dataset=dict(data_root={root!r}))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
"""


def write_cams(cam_dir, img_id, labels, shape, seed):
    """Smooth random normalised CAMs of the image's classes."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cams = []
    for _ in labels:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        blob = np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * (w / 4)**2))
        blob = blob * rng.uniform(0.8, 1.0, (h, w))
        cams.append(blob / blob.max())
    cams = np.stack(cams) if cams else np.zeros((0, h, w))
    save_cam_file(osp.join(cam_dir, img_id + '.npz'), cams, list(labels))


@pytest.fixture
def stage4(tiny_voc, tmp_path):
    """What a stage-4 test run needs: the CAM files of the test split (the
    train ids) under a hand-over root, a tiny-AffinityNet config and its
    checkpoint."""
    root = str(tmp_path / 'handovers')
    split = tiny_voc.splits['train']
    for k, img_id in enumerate(split):
        write_cams(f'{root}/cams', img_id, tiny_voc.labels[img_id],
                   tiny_voc.img_shape, k)
    config = str(tmp_path / 'aff_tiny.py')
    with open(config, 'w') as f:
        f.write(TINY_CONFIG.format(base=AFF_CONFIG, root=tiny_voc.root))
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(handover_root=root))
    resolve_handovers(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'aff_tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return SimpleNamespace(
        root=root,
        split=split,
        config=config,
        cfg=cfg,
        model=model.eval(),
        ckpt=ckpt,
        tiny_voc=tiny_voc,
        work=str(tmp_path / 'work'))


def expected_stage4(s):
    """Each image's labels and scores, from the checkpoint's affinities
    and the CAM files, step by step (walk: the config's 16 / 8 / 256)."""
    dataset = DATASETS.build(s.cfg.test_dataloader.dataset)
    out = {}
    with torch.no_grad():
        for idx in range(len(dataset)):
            sample = s.model.test_step(pseudo_collate([dataset[idx]]))[0]
            img_id = osp.splitext(osp.basename(sample.img_path))[0]
            cams, labels = load_cam_file(f'{s.root}/cams/{img_id}.npz')
            lut = np.array([0, *labels.tolist()])
            scores = propagate_cams(
                torch.from_numpy(cams),
                sample.pred_affinity.data,
                alpha=16,
                beta=8,
                steps=256,
                radius=5,
                stride=8).numpy()
            assert scores.shape == (len(labels) + 1, *s.tiny_voc.img_shape)
            cam_scores = np.concatenate(
                [np.full((1, *cams.shape[1:]), 0.2, np.float32), cams])
            out[img_id] = dict(
                cam=lut[cam_scores.argmax(0)],
                rw=lut[scores.argmax(0)],
                crf=expected_crf(sample.img_path, scores, labels.tolist()))
    assert sorted(out) == sorted(s.split)
    return out


def iou_by_sets(pred, gt, num_classes=21):
    """Per-class IoU straight from the definition, with pixel sets."""
    valid = gt != 255
    ious = []
    for c in range(num_classes):
        p, g = (pred == c) & valid, (gt == c) & valid
        union = (p | g).sum()
        ious.append((p & g).sum() / union if union else np.nan)
    return np.array(ious)


def pooled_miou(preds, masks):
    """mIoU (%) of the pixel sets pooled over the images, as the metric
    reports it (rounded to 2 decimals: within 0.005 of this)."""
    pred = np.concatenate([p.ravel() for p in preds])
    gt = np.concatenate([m.ravel() for m in masks])
    return pytest.approx(
        float(np.nanmean(iou_by_sets(pred, gt))) * 100, abs=0.0051)


def check_stage4_outputs(s, metrics):
    """The files are the walk's labels, and the metrics score them."""
    names = sorted(i + '.png' for i in s.split)
    assert sorted(os.listdir(f'{s.root}/pseudo_rw')) == names  # each once
    assert sorted(os.listdir(f'{s.root}/pseudo_rw_crf')) == names
    expected = expected_stage4(s)
    got = {}
    for img_id in s.split:
        got[img_id] = {
            key:
            load_label_png(f'{s.root}/{folder}/{img_id}.png',
                           s.tiny_voc.img_shape)
            for key, folder in (('rw', 'pseudo_rw'), ('crf', 'pseudo_rw_crf'))
        }
        np.testing.assert_array_equal(got[img_id]['rw'],
                                      expected[img_id]['rw'])
        np.testing.assert_array_equal(got[img_id]['crf'],
                                      expected[img_id]['crf'])
    masks = [s.tiny_voc.masks[i] for i in s.split]
    assert set(metrics) == {'CAM/mIoU', 'RW/mIoU', 'RW+dCRF/mIoU'}
    assert metrics['CAM/mIoU'] == pooled_miou(
        [expected[i]['cam'] for i in s.split], masks)
    assert metrics['RW/mIoU'] == pooled_miou([got[i]['rw'] for i in s.split],
                                             masks)
    assert metrics['RW+dCRF/mIoU'] == pooled_miou(
        [got[i]['crf'] for i in s.split], masks)


def test_test_tool_exports_and_scores(stage4, run_tool, tmp_path):
    """``tools/test.py CONFIG CKPT --cfg-options handover_root=DIR``: the
    shipped stage-4 test side (hook with 2 workers) on a tiny model."""
    s = stage4
    out = run_tool([
        osp.join(REPO, 'tools/test.py'), s.config, s.ckpt, '--work-dir',
        s.work, '--metrics-out', 'metrics.json', '--cfg-options',
        f'handover_root={s.root}'
    ], str(tmp_path))
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    check_stage4_outputs(s, metrics)
    assert re.search(
        rf'RandomWalkHook: 4 images, 4 written to {re.escape(s.root)}'
        r'/pseudo_rw and .*/pseudo_rw_crf, 0 skipped', out), out[-3000:]

    # a second run skips every image and scores the same; --show-dir
    # draws each image's RW label (mmseg's pictures: truth | prediction)
    before = mtimes(f'{s.root}/pseudo_rw'), mtimes(f'{s.root}/pseudo_rw_crf')
    out = run_tool([
        osp.join(REPO,
                 'tools/test.py'), s.config, s.ckpt, '--work-dir', s.work,
        '--metrics-out', 'again.json', '--show-dir', 'vis', '--cfg-options',
        f'handover_root={s.root}', 'default_hooks.visualization.interval=1'
    ], str(tmp_path))
    assert 'RandomWalkHook: 4 images, 0 written' in out
    assert (mtimes(f'{s.root}/pseudo_rw'),
            mtimes(f'{s.root}/pseudo_rw_crf')) == before
    with open(tmp_path / 'again.json') as f:
        assert json.load(f) == metrics
    folder = tmp_path / 'vis' / 'vis_data' / 'vis_image'
    assert sorted(os.listdir(folder)) == sorted(f'test_{i}.jpg_0.png'
                                                for i in s.split)
    for img_id in s.split:
        drawn = cv2.imread(str(folder / f'test_{img_id}.jpg_0.png'))
        image = cv2.imread(
            osp.join(s.tiny_voc.root, 'JPEGImages', f'{img_id}.jpg'))
        h, w = image.shape[:2]
        assert drawn.shape == (h, 2 * w, 3)
        label = np.array(PIL.Image.open(f'{s.root}/pseudo_rw/{img_id}.png'))
        # the prediction panel is the image with the RW label's class
        # colours blended in
        changed = np.abs(drawn[:, w:].astype(int) - image).max(-1) > 3
        if (label > 0).any():
            assert changed[label > 0].mean() > 0.9


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_test_two_processes_write_each_image_once(stage4, tmp_path):
    s = stage4
    env = dict(
        os.environ,
        PORT=str(_free_port()),
        PYTHON=sys.executable,
        PYTHONWARNINGS='ignore',
        OMP_NUM_THREADS='1')
    proc = subprocess.run([
        'bash',
        osp.join(REPO, 'tools/dist_test.sh'), s.config, s.ckpt, '2',
        '--work-dir', s.work, '--metrics-out', 'metrics.json', '--cfg-options',
        f'handover_root={s.root}'
    ],
                          cwd=str(tmp_path),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    check_stage4_outputs(s, metrics)  # each image's files exactly once
    # rank 0 logs what every rank wrote: shares that add up to the set
    m = re.search(
        r'RandomWalkHook: (\d+) images, (\d+) written.*'
        r'written per rank \[(\d+), (\d+)\], '
        r'skipped per rank \[(\d+), (\d+)\]', out)
    assert m, out[-4000:]
    total, written, r0, r1, s0, s1 = map(int, m.groups())
    assert total == written == r0 + r1 == len(s.split)
    assert r0 > 0 and r1 > 0 and s0 == s1 == 0
    assert 'more than once' not in out
