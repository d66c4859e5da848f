# Copyright (c) mmaff contributors. All rights reserved.
import inspect
import logging
import multiprocessing as mp
import os.path as osp
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Deque, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmaff.ops.crf import dense_crf
from mmaff.ops.propagation import (crf_label, propagate_cams,
                                   scores_to_label)
from mmaff.ops.random_walk import cpu_threads
from mmaff.registry import HOOKS
from mmaff.utils.io import (load_cam_file, remove_stale_temp_files,
                            save_label_png)

#: Keyword arguments of :func:`mmaff.ops.dense_crf` a config may set.
CRF_KEYS = tuple(
    name for name in inspect.signature(dense_crf).parameters
    if name not in ('image', 'probs'))


def read_rgb(path: str, shape: Tuple[int, int]) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB, as the test pipeline does.

    Args:
        path (str): Image file.
        shape (tuple[int, int]): The (H, W) it must have.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    image = mmcv.imread(path, flag='color', channel_order='rgb')
    if image is None:
        raise FileNotFoundError(f'cannot read the image {path}')
    if image.shape[:2] != tuple(shape):
        raise ValueError(f'{path}: image size {image.shape[:2]} does not '
                         f'match ori_shape {tuple(shape)}')
    return np.ascontiguousarray(image, dtype=np.uint8)


def export_pseudo_label(job: dict) -> str:
    """One image's random walk (+ dCRF) and label files: the per-image work.

    Runs inline or in a worker process of :class:`RandomWalkHook`. Both
    labels are computed before either file is written, and every file is
    written atomically, so an interruption leaves no partial file.

    Args:
        job (dict): ``img_id``, ``img_path``, ``ori_shape``; either
            ``cam_path`` + ``img_labels`` + ``affinity`` (P, h, w) or the
            already propagated ``scores`` (K + 1, H, W) + ``labels``;
            ``walk`` (kwargs of :func:`propagate_cams`); ``rw_path`` and
            ``crf_path`` (None: do not write); ``crf`` (kwargs of
            :func:`dense_crf`).

    Returns:
        str: The image id.
    """
    if job.get('scores') is None:
        cams, labels = load_cam_file(
            job['cam_path'],
            expected_shape=job['ori_shape'],
            image_labels=job['img_labels'])
        affinity = job['affinity']
        if isinstance(affinity, np.ndarray):
            affinity = torch.from_numpy(affinity)
        scores = propagate_cams(
            torch.from_numpy(cams).to(affinity.device), affinity,
            **job['walk'])
    else:
        scores, labels = job['scores'], job['labels']
        if isinstance(scores, np.ndarray):
            scores = torch.from_numpy(scores)
    scores = scores.cpu()
    labels = [int(i) for i in labels]
    outputs = []
    if job['rw_path'] is not None:
        outputs.append((job['rw_path'], scores_to_label(scores, labels)))
    if job['crf_path'] is not None:
        image = read_rgb(job['img_path'], job['ori_shape'])
        outputs.append((job['crf_path'],
                        crf_label(image, scores, labels, **job['crf'])))
    for path, label in outputs:
        save_label_png(path, label.numpy().astype(np.uint8))
    return job['img_id']


def _init_worker() -> None:
    """Worker processes run single-threaded: the parallelism is theirs."""
    torch.set_num_threads(1)


@HOOKS.register_module()
class RandomWalkHook(Hook):
    """Stage 4: turn AffinityNet's affinities + the CAMs into pseudo labels.

    Add it to ``custom_hooks`` of an AffinityNet test config and run
    ``tools/test.py`` (or ``tools/dist_test.sh``). For each test sample
    (``pred_affinity`` and metainfo ``img_path``, ``ori_shape``,
    ``img_labels``) it reads ``<cam_dir>/<id>.npz``, propagates the CAMs
    with :func:`mmaff.ops.propagate_cams`, and writes
    ``<out_dir>/<id>.png`` (argmax, label ids, VOC palette); with
    ``crf_out_dir`` it also refines the random-walk scores (normalised to sum
    1 per pixel) by :func:`mmaff.ops.dense_crf` on the uint8 RGB image and
    writes ``<crf_out_dir>/<id>.png``. Files are written atomically; images
    whose outputs all exist are skipped (counted in the summary).

    With ``num_workers > 0`` the per-image CPU work (CAM reading, walk, CRF,
    writing) goes to a process pool while the model computes the next
    batches (when the affinities are on a GPU, the walk stays there and
    only the rest goes to the pool). All work is finished at the last test
    iteration, before the evaluator computes its metrics (mmengine's
    ``TestLoop`` evaluates before ``after_test_epoch``), so
    :class:`mmaff.evaluation.PseudoLabelMetric` sees every file. A worker's
    error is re-raised naming the image.

    Under ``tools/dist_test.sh`` every rank handles its own share of the
    images; the test sampler must use ``round_up=False`` so that no image is
    processed twice (the summary warns when one was).

    Args:
        cam_dir (str): Folder of the stage-1 CAM files (``<id>.npz``).
        out_dir (str): Output folder of the random-walk labels.
        crf_out_dir (str, optional): Output folder of the RW + dCRF labels;
            None skips the CRF. Defaults to None.
        alpha (float): Background power ``(1 - max CAM) ** alpha``.
            Defaults to 16.
        beta (float): Affinity power. Defaults to 8.
        steps (int): Random-walk steps. Defaults to 256.
        radius (int): Pair radius of the affinities. Defaults to 5.
        stride (int): Feature stride of the affinity grid. Defaults to 8.
        crf (dict, optional): Keyword arguments of
            :func:`mmaff.ops.dense_crf` (``iterations``, ``gauss_sxy``,
            ...). Defaults to None (the reference's values).
        num_workers (int): Worker processes for the per-image work; 0 runs
            it inline. Defaults to 0.
        start_method (str, optional): Multiprocessing start method of the
            pool ('fork', 'spawn', 'forkserver'); None uses 'fork' where
            available (like the data loader workers), else 'spawn'.
        max_pending (int, optional): Images queued at most before the hook
            waits for the oldest; None = 4 x num_workers.
    """

    priority = 'NORMAL'

    def __init__(self,
                 cam_dir: str,
                 out_dir: str,
                 crf_out_dir: Optional[str] = None,
                 alpha: float = 16,
                 beta: float = 8,
                 steps: int = 256,
                 radius: int = 5,
                 stride: int = 8,
                 crf: Optional[dict] = None,
                 num_workers: int = 0,
                 start_method: Optional[str] = None,
                 max_pending: Optional[int] = None) -> None:
        if not cam_dir or not out_dir:
            raise ValueError('RandomWalkHook needs cam_dir and out_dir, got '
                             f'cam_dir={cam_dir!r}, out_dir={out_dir!r}')
        for name, value in (('alpha', alpha), ('beta', beta)):
            if isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not 0 < value < float('inf'):
                raise ValueError(f'RandomWalkHook: {name} must be a finite '
                                 f'number > 0, got {value!r}')
        for name, value, low in (('steps', steps, 1), ('radius', radius, 1),
                                 ('stride', stride, 1), ('num_workers',
                                                         num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or \
                    value < low:
                raise ValueError(f'RandomWalkHook: {name} must be an int >= '
                                 f'{low}, got {value!r}')
        crf = dict(crf or {})
        unknown = sorted(set(crf) - set(CRF_KEYS))
        if unknown:
            raise ValueError(f'RandomWalkHook: unknown crf options {unknown}; '
                             f'dense_crf accepts {list(CRF_KEYS)}')
        if start_method is None:
            start_method = 'fork' if 'fork' in \
                mp.get_all_start_methods() else 'spawn'
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f'RandomWalkHook: start_method must be one of '
                             f'{mp.get_all_start_methods()}, got '
                             f'{start_method!r}')
        self.cam_dir = cam_dir
        self.out_dir = out_dir
        self.crf_out_dir = crf_out_dir
        self.walk = dict(
            alpha=alpha, beta=beta, steps=steps, radius=radius, stride=stride)
        self.crf = crf
        self.num_workers = num_workers
        self.start_method = start_method
        self.max_pending = max_pending or 4 * max(num_workers, 1)
        self._pool: Optional[ProcessPoolExecutor] = None
        self._pending: Deque[Tuple[dict, Future]] = deque()
        self._reset()

    def _reset(self) -> None:
        self._written: List[str] = []
        self._skipped: List[str] = []
        self._start = time.perf_counter()

    # -- the per-image jobs ------------------------------------------------

    def _job(self, sample) -> Optional[dict]:
        """The job of one output sample; None when its outputs all exist."""
        meta = sample.metainfo
        for key in ('img_path', 'ori_shape', 'img_labels'):
            if key not in meta:
                raise KeyError(
                    f'RandomWalkHook needs {key!r} in the metainfo of the '
                    'test samples (PackSegInputs meta_keys must include it)')
        img_path = meta['img_path']
        img_id = osp.splitext(osp.basename(img_path))[0]
        # Only the outputs that do not exist yet are (re)written.
        rw_path = osp.join(self.out_dir, img_id + '.png')
        rw_path = None if osp.isfile(rw_path) else rw_path
        crf_path = None
        if self.crf_out_dir:
            crf_path = osp.join(self.crf_out_dir, img_id + '.png')
            crf_path = None if osp.isfile(crf_path) else crf_path
        if rw_path is None and crf_path is None:
            self._skipped.append(img_id)
            return None
        cam_path = osp.join(self.cam_dir, img_id + '.npz')
        if not osp.isfile(cam_path):
            raise FileNotFoundError(
                f'RandomWalkHook: no CAM file for image {img_id} '
                f'({img_path}): {cam_path} does not exist (export the CAMs '
                'with the stage-1 config first)')
        if 'pred_affinity' not in sample:
            raise KeyError('RandomWalkHook needs predictions with '
                           'pred_affinity (an AffinityNet model)')
        return dict(
            img_id=img_id,
            img_path=img_path,
            ori_shape=tuple(int(s) for s in meta['ori_shape'][:2]),
            img_labels=[int(c) for c in meta['img_labels']],
            cam_path=cam_path,
            affinity=sample.pred_affinity.data.detach(),
            walk=self.walk,
            crf=self.crf,
            rw_path=rw_path,
            crf_path=crf_path)

    @staticmethod
    def _error(job: dict, err: BaseException) -> RuntimeError:
        return RuntimeError(
            f"RandomWalkHook: image {job['img_id']} ({job['img_path']}) "
            f'failed: {type(err).__name__}: {err}')

    def _run_inline(self, job: dict) -> None:
        try:
            with cpu_threads(1):
                export_pseudo_label(job)
        except Exception as err:
            raise self._error(job, err) from err
        self._written.append(job['img_id'])

    @staticmethod
    def _walk_here(affinity: torch.Tensor) -> bool:
        """With workers: walk in this process when the affinities are on an
        accelerator (the pool then gets the scores), else in the worker."""
        return affinity.device.type != 'cpu'

    def _submit(self, job: dict) -> None:
        # The pool pickles its arguments later, in a thread: give it a job
        # of its own and keep only the names here.
        payload = dict(job)
        affinity = payload.pop('affinity')
        if self._walk_here(affinity):
            # The walk stays on the accelerator; the pool gets the scores.
            try:
                cams, labels = load_cam_file(
                    job['cam_path'],
                    expected_shape=job['ori_shape'],
                    image_labels=job['img_labels'])
                payload['scores'] = propagate_cams(
                    torch.from_numpy(cams).to(affinity.device), affinity,
                    **self.walk).cpu().numpy()
                payload['labels'] = labels.tolist()
            except Exception as err:
                raise self._error(job, err) from err
        else:
            payload['affinity'] = affinity.numpy()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=mp.get_context(self.start_method),
                initializer=_init_worker)
        future = self._pool.submit(export_pseudo_label, payload)
        names = dict(img_id=job['img_id'], img_path=job['img_path'])
        self._pending.append((names, future))

    def _harvest(self, block: bool, keep: int = 0) -> None:
        """Collect finished jobs (all but ``keep`` when ``block``)."""
        while len(self._pending) > keep and (block
                                             or self._pending[0][1].done()):
            job, future = self._pending.popleft()
            try:
                future.result()
            except Exception as err:
                self._close_pool()
                raise self._error(job, err) from err
            self._written.append(job['img_id'])

    def _close_pool(self) -> None:
        if self._pool is not None:
            for _, future in self._pending:
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _finish(self) -> None:
        """Wait for every queued image and stop the pool."""
        try:
            self._harvest(block=True)
        finally:
            self._close_pool()

    # -- hook points -------------------------------------------------------

    def before_test_epoch(self, runner) -> None:
        """Reset the counters and remove the temporary files that killed
        writers left in the output folders."""
        self._close_pool()
        self._reset()
        for folder in (self.out_dir, self.crf_out_dir):
            removed = remove_stale_temp_files(folder) if folder else []
            if removed:
                print_log(
                    f'RandomWalkHook: removed {len(removed)} temporary files '
                    f'of an interrupted run from {folder}',
                    logger='current')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        """Propagate, refine and write the labels of the batch's images."""
        for sample in outputs or []:
            job = self._job(sample)
            if job is None:
                continue
            if self.num_workers == 0:
                self._run_inline(job)
            else:
                self._submit(job)
                self._harvest(block=False)
                self._harvest(block=True, keep=self.max_pending)
        if self.num_workers and self._is_last_iter(runner, batch_idx):
            # The evaluator computes its metrics before after_test_epoch.
            self._finish()

    @staticmethod
    def _is_last_iter(runner, batch_idx: int) -> bool:
        try:
            return batch_idx + 1 >= len(runner.test_dataloader)
        except (AttributeError, TypeError, RuntimeError):
            return False

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        """Finish the queued work and log a one-line summary."""
        self._finish()
        seconds = time.perf_counter() - self._start
        ranks = all_gather_object((self._written, self._skipped))
        written = [len(w) for w, _ in ranks]
        skipped = [len(s) for _, s in ranks]
        total, done = sum(written) + sum(skipped), sum(written)
        dirs = self.out_dir + (f' and {self.crf_out_dir}'
                               if self.crf_out_dir else '')
        rate = len(self._written) / max(seconds, 1e-9)
        line = (f'RandomWalkHook: {total} images, {done} written to {dirs}, '
                f'{sum(skipped)} skipped (outputs exist) in {seconds:.1f} s')
        if get_world_size() > 1:
            line += (f' ({rate:.2f} img/s on rank 0); written per rank '
                     f'{written}, skipped per rank {skipped}')
        else:
            line += f' ({rate:.2f} img/s)'
        print_log(line, logger='current')
        seen, twice = set(), set()
        for w, s in ranks:
            for img_id in w + s:
                (twice if img_id in seen else seen).add(img_id)
        if twice:
            print_log(
                f'RandomWalkHook: {len(twice)} images were processed more '
                f'than once (e.g. {sorted(twice)[0]}): the test sampler '
                'needs round_up=False',
                logger='current',
                level=logging.WARNING)
