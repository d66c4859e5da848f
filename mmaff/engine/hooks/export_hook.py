# Copyright (c) mmaff contributors. All rights reserved.
import ctypes
import logging
import multiprocessing as mp
import os
import os.path as osp
import signal
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmaff.utils.io import remove_stale_temp_files


#: ``prctl`` option of Linux: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _init_worker(parent_pid: int) -> None:
    """Worker set-up: single-threaded torch (the parallelism is the pool's),
    Ctrl-C left to the parent, and death with the parent.

    A killed parent (SIGKILL leaves it no time to stop its pool) takes its
    workers with it on Linux, where the kernel sends them SIGKILL; a worker
    whose parent died before that was arranged exits at once.

    Args:
        parent_pid (int): The pid of the process that starts the pool.
    """
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith('linux'):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)


class BaseExportHook(Hook):
    """Write per-image files during a test run: the base of every exporter.

    For each test sample, :meth:`outputs` names the files the image should
    have (``name -> path``); those that exist are kept (unless
    ``overwrite``), and an image whose files all exist is skipped, so an
    interrupted export resumes where it stopped. For the rest,
    :meth:`job` builds a picklable job and the class's ``worker``
    (a module-level function ``job -> None`` that writes the files
    atomically) runs it, inline or, with ``num_workers > 0``, in a process
    pool while the model computes the next batches. All work is finished
    at the last test iteration, before the evaluator computes its metrics
    (mmengine's ``TestLoop`` evaluates before ``after_test_epoch``), so a
    metric may read the files. Any error is re-raised naming the image. The
    temporary files of a killed run are removed when the test epoch starts.

    Under ``tools/dist_test.sh`` every rank writes its own share of the
    images (the test sampler must use ``round_up=False``; the summary warns
    when an image was handled twice). At the end one line summarises the
    images written and skipped (per rank when distributed).

    Subclasses set ``worker`` and implement :meth:`outputs` and :meth:`job`.

    Args:
        out_dirs (Sequence[str]): The folders written (cleaned of stale
            temporary files; named in the summary).
        overwrite (bool): Rewrite files that exist. Defaults to False.
        num_workers (int): Worker processes; 0 runs the jobs inline.
            Defaults to 0.
        start_method (str, optional): Multiprocessing start method of the
            pool; None uses 'fork' where available (like the data loader
            workers), else 'spawn'.
        max_pending (int, optional): Images queued at most before the hook
            waits for the oldest; None = 4 x num_workers.
    """

    priority = 'NORMAL'
    #: ``job -> None``: writes one image's files (module-level: picklable).
    worker: Callable[[dict], None]

    def __init__(self,
                 out_dirs: Sequence[str],
                 overwrite: bool = False,
                 num_workers: int = 0,
                 start_method: Optional[str] = None,
                 max_pending: Optional[int] = None) -> None:
        name = type(self).__name__
        if isinstance(num_workers, bool) or not isinstance(
                num_workers, int) or num_workers < 0:
            raise ValueError(f'{name}: num_workers must be an int >= 0, got '
                             f'{num_workers!r}')
        methods = mp.get_all_start_methods()
        if start_method is None:
            start_method = 'fork' if 'fork' in methods else 'spawn'
        if start_method not in methods:
            raise ValueError(f'{name}: start_method must be one of {methods}, '
                             f'got {start_method!r}')
        self.out_dirs = [d for d in out_dirs if d]
        self.overwrite = bool(overwrite)
        self.num_workers = num_workers
        self.start_method = start_method
        self.max_pending = max_pending or 4 * max(num_workers, 1)
        self._pool: Optional[ProcessPoolExecutor] = None
        self._pending: Deque[Tuple[dict, Future]] = deque()
        self._reset()

    # -- what subclasses provide ------------------------------------------

    def outputs(self, sample) -> Dict[str, str]:
        """The files of one test sample: output name -> path."""
        raise NotImplementedError

    def job(self, sample, todo: Dict[str, str]) -> dict:
        """The picklable job that writes ``todo`` (name -> path)."""
        raise NotImplementedError

    # -- the machinery ----------------------------------------------------

    @staticmethod
    def image_id(sample) -> str:
        """The image id (file stem of ``img_path``) of a test sample."""
        return osp.splitext(osp.basename(sample.metainfo['img_path']))[0]

    @property
    def num_written(self) -> int:
        """Images whose files this process wrote in the current run."""
        return len(self._written)

    @property
    def num_skipped(self) -> int:
        """Images skipped in the current run (their files existed)."""
        return len(self._skipped)

    def _reset(self) -> None:
        self._written: List[str] = []
        self._skipped: List[str] = []
        self._start = time.perf_counter()

    def _error(self, img: dict, err: BaseException) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__}: image {img['img_id']} "
            f"({img['img_path']}) failed: {type(err).__name__}: {err}")

    def _run(self, img: dict, job: dict) -> None:
        if self.num_workers == 0:
            try:
                type(self).worker(job)
            except Exception as err:
                raise self._error(img, err) from err
            self._written.append(img['img_id'])
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=mp.get_context(self.start_method),
                initializer=_init_worker,
                initargs=(os.getpid(), ))
        self._pending.append((img, self._pool.submit(type(self).worker,
                                                     job)))
        self._harvest(block=False)
        self._harvest(block=True, keep=self.max_pending)

    def _harvest(self, block: bool, keep: int = 0) -> None:
        """Collect finished jobs (all but ``keep`` when ``block``)."""
        while len(self._pending) > keep and (block
                                             or self._pending[0][1].done()):
            img, future = self._pending.popleft()
            try:
                future.result()
            except Exception as err:
                self._close_pool()
                raise self._error(img, err) from err
            self._written.append(img['img_id'])

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

    def export(self, img_id: str, img_path: str, outputs: Dict[str, str],
               make_job: Callable[[Dict[str, str]], dict]) -> None:
        """Write (or queue) one image's files, skipping those that exist.

        What ``after_test_iter`` does for each test sample; tools that
        export from files call it too (between :meth:`before_test_epoch`
        and :meth:`after_test_epoch`).

        Args:
            img_id (str): The image id (named in errors and the summary).
            img_path (str): The image file (named in errors).
            outputs (dict[str, str]): Output name -> path.
            make_job (Callable): ``todo -> job`` for the outputs to write.
        """
        img = dict(img_id=img_id, img_path=img_path)
        todo = {
            name: path
            for name, path in outputs.items()
            if self.overwrite or not osp.isfile(path)
        }
        if not todo:
            self._skipped.append(img_id)
            return
        try:
            job = make_job(todo)
        except Exception as err:
            self._close_pool()  # as after a worker's error
            raise self._error(img, err) from err
        self._run(img, job)

    # -- hook points ------------------------------------------------------

    def before_test_epoch(self, runner) -> None:
        """Reset the counters and remove the temporary files that killed
        writers left in the output folders."""
        self._close_pool()
        self._reset()
        for folder in self.out_dirs:
            removed = remove_stale_temp_files(folder)
            if removed:
                print_log(
                    f'{type(self).__name__}: removed {len(removed)} '
                    f'temporary files of an interrupted run from {folder}',
                    logger='current')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        """Write the files of the batch's images (or queue them)."""
        for sample in outputs or []:
            self.export(
                self.image_id(sample), sample.metainfo['img_path'],
                self.outputs(sample),
                lambda todo, sample=sample: self.job(sample, todo))
        if self._pending and self._is_last_iter(runner, batch_idx):
            self._finish()  # the evaluator computes its metrics next

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
        rate = len(self._written) / max(seconds, 1e-9)
        hint = ' (overwrite=True rewrites them)' if sum(skipped) else ''
        line = (f'{type(self).__name__}: {sum(written) + sum(skipped)} '
                f'images, {sum(written)} written to '
                f'{" and ".join(self.out_dirs)}, {sum(skipped)} skipped '
                f'(files exist){hint} in {seconds:.1f} s ({rate:.2f} img/s')
        if get_world_size() > 1:
            line += (f' on rank 0); written per rank {written}, skipped per '
                     f'rank {skipped}')
        else:
            line += ')'
        print_log(line, logger='current')
        seen, twice = set(), set()
        for w, s in ranks:
            for img_id in w + s:
                (twice if img_id in seen else seen).add(img_id)
        if twice:
            print_log(
                f'{type(self).__name__}: {len(twice)} images were handled '
                f'more than once (e.g. {sorted(twice)[0]}): the test sampler '
                'needs round_up=False',
                logger='current',
                level=logging.WARNING)
