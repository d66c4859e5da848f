# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Dict, Optional

from mmaff.registry import HOOKS
from mmaff.utils.io import CAM_DTYPES, save_cam_file
from .export_hook import BaseExportHook


def write_cam_file(job: dict) -> None:
    """Write one image's CAM file (the per-image work of the hook)."""
    save_cam_file(job['path'], job['cams'], job['labels'],
                  job.get('dtype', 'float16'))


@HOOKS.register_module()
class CAMExportHook(BaseExportHook):
    """Write each test image's normalised CAMs to ``<out_dir>/<id>.npz``.

    Only the classes present in the image-level labels are stored (full
    image resolution; float16, or quantised to uint8 with ``dtype='uint8'``,
    ~9x smaller: see :mod:`mmaff.utils.io`). Resuming, atomic
    writes, the optional worker pool and the summary are
    :class:`BaseExportHook`'s. An existing file is kept, also one of another
    model: after retraining, export into a fresh folder or set
    ``overwrite=True``. A kept image is still computed and scored by the
    test metrics, so they always cover the whole test set.

    Args:
        out_dir (str): Output folder (``handovers.cams`` in mmaff's
            configs).
        overwrite (bool): Rewrite CAM files that exist. Defaults to False.
        num_workers (int): Worker processes that write the files; 0 writes
            them inline. Defaults to 0.
        dtype (str): The CAM files' encoding, ``'float16'`` or ``'uint8'``
            (:func:`mmaff.utils.io.save_cam_file`). Defaults to
            ``'float16'``.
        **kwargs: Other arguments of :class:`BaseExportHook`.
    """

    worker = staticmethod(write_cam_file)

    def __init__(self,
                 out_dir: str,
                 overwrite: bool = False,
                 num_workers: int = 0,
                 dtype: str = 'float16',
                 **kwargs) -> None:
        if dtype not in CAM_DTYPES:
            raise ValueError(f'CAMExportHook: dtype must be one of '
                             f'{CAM_DTYPES}, got {dtype!r}')
        if not out_dir:
            raise ValueError(
                f'CAMExportHook needs an out_dir, got {out_dir!r}')
        super().__init__([out_dir], overwrite, num_workers, **kwargs)
        self.out_dir = out_dir
        self.dtype = dtype

    def outputs(self, sample) -> Dict[str, str]:
        """``<out_dir>/<id>.npz``."""
        return dict(
            cams=osp.join(self.out_dir,
                          self.image_id(sample) + '.npz'))

    def job(self, sample, todo: Dict[str, str]) -> Optional[dict]:
        """The present classes' CAMs, as float32 numpy."""
        labels = [int(c) for c in sample.metainfo['img_labels']]
        cams = sample.pred_cams.data[[c - 1 for c in labels]]
        return dict(
            path=todo['cams'],
            cams=cams.float().cpu().numpy(),
            labels=labels,
            dtype=self.dtype)
