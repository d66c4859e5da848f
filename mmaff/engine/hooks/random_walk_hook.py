# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Dict, Optional

import numpy as np

from mmaff.ops.crf import crf_options
from mmaff.ops.propagation import crf_label
from mmaff.registry import HOOKS
from mmaff.utils.io import read_rgb, save_label_png
from .export_hook import BaseExportHook


def write_pseudo_labels(job: dict) -> None:
    """One image's label files: the RW label, and the dCRF of its scores.

    Both labels are computed before either file is written (atomically).

    Args:
        job (dict): ``rw`` ((H, W) uint8 label, None: not wanted) with
            ``rw_path``; ``scores`` ((K + 1, H, W)), ``label_ids`` (of
            channels 1..K), ``img_path``, ``crf`` (dense_crf kwargs) with
            ``crf_path`` (None: not wanted).
    """
    outputs = []
    if job.get('rw_path'):
        outputs.append((job['rw_path'], job['rw']))
    if job.get('crf_path'):
        image = read_rgb(job['img_path'], job['scores'].shape[1:])
        label = crf_label(image, job['scores'], job['label_ids'], **job['crf'])
        outputs.append((job['crf_path'], label.numpy().astype(np.uint8)))
    for path, label in outputs:
        save_label_png(path, label)


@HOOKS.register_module()
class RandomWalkHook(BaseExportHook):
    """Stage 4's files: the random-walk pseudo labels, and after the dCRF.

    Add it to ``custom_hooks`` of an AffinityNet test config whose test
    pipeline loads the CAMs (:class:`mmaff.datasets.transforms.LoadCAMs`):
    :class:`mmaff.models.AffinityNet` then walks them and returns
    ``pred_sem_seg`` (the RW label) and ``seg_logits`` (the walked scores).
    The hook writes ``<out_dir>/<id>.png`` (label ids, VOC palette) and,
    with ``crf_out_dir``, refines the scores (normalised to sum 1 per pixel)
    by :func:`mmaff.ops.dense_crf` on the uint8 RGB image and writes
    ``<crf_out_dir>/<id>.png``. With ``num_workers > 0`` the dCRF and the
    writing run in a process pool while the model walks the next images;
    resuming, atomic writes and the summary are :class:`BaseExportHook`'s.

    Args:
        out_dir (str): Folder of the RW labels (``handovers.pseudo_rw``).
        crf_out_dir (str, optional): Folder of the RW + dCRF labels
            (``handovers.pseudo_rw_crf``); None skips the CRF.
        crf (dict, optional): Keyword arguments of
            :func:`mmaff.ops.dense_crf` (``iterations``, ``bilateral_sxy``,
            ...). Defaults to None (the reference's values).
        num_workers (int): Worker processes; 0 works inline. Defaults to 0.
        **kwargs: Other arguments of :class:`BaseExportHook`
            (``overwrite``, ``start_method``, ``max_pending``).
    """

    worker = staticmethod(write_pseudo_labels)

    def __init__(self,
                 out_dir: str,
                 crf_out_dir: Optional[str] = None,
                 crf: Optional[dict] = None,
                 num_workers: int = 0,
                 **kwargs) -> None:
        if not out_dir:
            raise ValueError(f'RandomWalkHook needs an out_dir, got '
                             f'{out_dir!r}')
        crf = crf_options(crf, 'RandomWalkHook')
        super().__init__([out_dir, crf_out_dir],
                         num_workers=num_workers,
                         **kwargs)
        self.out_dir = out_dir
        self.crf_out_dir = crf_out_dir
        self.crf = crf

    def outputs(self, sample) -> Dict[str, str]:
        """``<out_dir>/<id>.png`` (and ``<crf_out_dir>/<id>.png``)."""
        name = self.image_id(sample) + '.png'
        out = dict(rw=osp.join(self.out_dir, name))
        if self.crf_out_dir:
            out['crf'] = osp.join(self.crf_out_dir, name)
        return out

    def job(self, sample, todo: Dict[str, str]) -> dict:
        """The RW label and, for the dCRF, the walked scores."""
        if 'pred_sem_seg' not in sample or 'score_labels' not in \
                sample.metainfo:
            raise KeyError(
                'RandomWalkHook needs the walk in the predictions: an '
                'AffinityNet model and LoadCAMs in the test pipeline (with '
                "'cams', 'cam_labels' in PackSegInputs' meta_keys)")
        job = dict(
            img_path=sample.metainfo['img_path'],
            rw_path=todo.get('rw'),
            crf_path=todo.get('crf'),
            crf=self.crf)
        if 'rw' in todo:
            job['rw'] = sample.pred_sem_seg.data[0].cpu().numpy().astype(
                np.uint8)
        if 'crf' in todo:
            job['scores'] = sample.seg_logits.data.float().cpu().numpy()
            job['label_ids'] = list(sample.metainfo['score_labels'][1:])
        return job
