# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Dict, Optional, Union

import numpy as np

from mmaff.models.refiners import BaseRefiner, build_refiner
from mmaff.ops.propagation import refine_label
from mmaff.registry import HOOKS
from mmaff.utils.io import read_rgb, save_label_png
from .confident_region_hook import check_refiner_workers
from .export_hook import BaseExportHook


def write_pseudo_labels(job: dict) -> None:
    """One image's label files: the RW label, and the refined one.

    Both labels are computed before either file is written (atomically).

    Args:
        job (dict): ``rw`` ((H, W) uint8 label, None: not wanted) with
            ``rw_path``; ``scores`` ((K + 1, H, W)), ``label_ids`` (of
            channels 1..K), ``img_path``, ``refiner`` (a
            :class:`mmaff.models.BaseRefiner`) with ``crf_path`` (None: not
            wanted).
    """
    outputs = []
    if job.get('rw_path'):
        outputs.append((job['rw_path'], job['rw']))
    if job.get('crf_path'):
        image = read_rgb(job['img_path'], job['scores'].shape[1:])
        label = refine_label(image, job['scores'], job['label_ids'],
                             job['refiner'])
        outputs.append((job['crf_path'], label.numpy().astype(np.uint8)))
    for path, label in outputs:
        save_label_png(path, label)


@HOOKS.register_module()
class RandomWalkHook(BaseExportHook):
    """Stage 4's files: the random-walk pseudo labels, and after refinement.

    Add it to ``custom_hooks`` of an AffinityNet test config whose test
    pipeline loads the CAMs (:class:`mmaff.datasets.transforms.LoadCAMs`):
    :class:`mmaff.models.AffinityNet` then walks them and returns
    ``pred_sem_seg`` (the RW label) and ``seg_logits`` (the walked scores).
    The hook writes ``<out_dir>/<id>.png`` (label ids, VOC palette) and,
    with ``crf_out_dir``, refines the scores (normalised to sum 1 per pixel)
    with the ``refiner`` (the dense CRF by default, the paper's RW + dCRF;
    :func:`mmaff.ops.refine_label`) on the uint8 RGB image and writes
    ``<crf_out_dir>/<id>.png``. With ``num_workers > 0`` the refiner (a CPU
    one) and the writing run in a process pool while the model walks the
    next images; resuming, atomic writes and the summary are
    :class:`BaseExportHook`'s.

    Args:
        out_dir (str): Folder of the RW labels (``handovers.pseudo_rw``).
        crf_out_dir (str, optional): Folder of the refined (RW + dCRF, or
            RW + the chosen refiner) labels (``handovers.pseudo_rw_crf``);
            None skips the refinement.
        refiner (dict | BaseRefiner, optional): The label refiner
            (``dict(type='DenseCRF', ...)`` or ``dict(type='PAR', ...)``;
            see :mod:`mmaff.models.refiners`). Defaults to None: the dense
            CRF with the reference's values.
        crf (dict, optional): Deprecated (DeprecationWarning): keyword
            arguments of :func:`mmaff.ops.dense_crf`, the same as
            ``refiner=dict(type='DenseCRF', **crf)``.
        num_workers (int): Worker processes; 0 works inline (needed by a GPU
            refiner). Defaults to 0.
        **kwargs: Other arguments of :class:`BaseExportHook`
            (``overwrite``, ``start_method``, ``max_pending``).
    """

    worker = staticmethod(write_pseudo_labels)

    def __init__(self,
                 out_dir: str,
                 crf_out_dir: Optional[str] = None,
                 refiner: Union[None, dict, BaseRefiner] = None,
                 crf: Optional[dict] = None,
                 num_workers: int = 0,
                 **kwargs) -> None:
        if not out_dir:
            raise ValueError(f'RandomWalkHook needs an out_dir, got '
                             f'{out_dir!r}')
        refiner = build_refiner(refiner, crf, 'RandomWalkHook')
        check_refiner_workers(refiner, num_workers, 'RandomWalkHook')
        super().__init__([out_dir, crf_out_dir],
                         num_workers=num_workers,
                         **kwargs)
        self.out_dir = out_dir
        self.crf_out_dir = crf_out_dir
        self.refiner = refiner

    def outputs(self, sample) -> Dict[str, str]:
        """``<out_dir>/<id>.png`` (and ``<crf_out_dir>/<id>.png``)."""
        name = self.image_id(sample) + '.png'
        out = dict(rw=osp.join(self.out_dir, name))
        if self.crf_out_dir:
            out['crf'] = osp.join(self.crf_out_dir, name)
        return out

    def job(self, sample, todo: Dict[str, str]) -> dict:
        """The RW label and, for the refiner, the walked scores."""
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
            refiner=self.refiner)
        if 'rw' in todo:
            job['rw'] = sample.pred_sem_seg.data[0].cpu().numpy().astype(
                np.uint8)
        if 'crf' in todo:
            job['scores'] = sample.seg_logits.data.float().cpu().numpy()
            job['label_ids'] = list(sample.metainfo['score_labels'][1:])
        return job
