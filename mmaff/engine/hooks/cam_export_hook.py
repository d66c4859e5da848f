# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
import time
from typing import List, Optional, Sequence

from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmaff.registry import HOOKS
from mmaff.utils.io import remove_stale_temp_files, save_cam_file


@HOOKS.register_module()
class CAMExportHook(Hook):
    """Write each test image's normalised CAMs to ``<out_dir>/<id>.npz``.

    Only the classes present in the image-level labels are stored (float16,
    full image resolution, see :mod:`mmaff.utils.io`); each file is written
    atomically, and the temporary files of an earlier, killed run are
    removed when the test epoch starts.

    An existing ``<id>.npz`` is kept (counted as skipped in the summary
    logged at the end), so an interrupted export resumes without rewriting
    the finished files. The files of another model are kept too: after
    retraining, export into a fresh folder or set ``overwrite=True``
    (``--cfg-options custom_hooks.0.overwrite=True``), which rewrites
    them. The hook only sees the model's outputs, so a skipped image is
    still computed (and scored by the test metrics); to leave the finished
    images out of the test run altogether, also give the test dataset
    ``skip_done=dict(dir=out_dir, suffix='.npz')``
    (:class:`mmaff.datasets.VOCImageLabelDataset`; the metrics then cover
    only the images left to do).

    Args:
        out_dir (str): Output folder.
        overwrite (bool): Rewrite CAM files that already exist. Defaults to
            False.
    """

    priority = 'NORMAL'

    def __init__(self, out_dir: str, overwrite: bool = False) -> None:
        self.out_dir = out_dir
        self.overwrite = bool(overwrite)
        self._reset()

    def _reset(self) -> None:
        self._written: List[str] = []
        self._skipped: List[str] = []
        self._start = time.perf_counter()

    def before_test_epoch(self, runner) -> None:
        """Reset the counters and remove the temporary files that killed
        writers left in ``out_dir``."""
        self._reset()
        removed = remove_stale_temp_files(self.out_dir)
        if removed:
            print_log(
                f'CAMExportHook: removed {len(removed)} temporary files of '
                f'an interrupted run from {self.out_dir}',
                logger='current')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        """Save the CAMs of the batch's predictions."""
        for sample in outputs or []:
            img_id = osp.splitext(osp.basename(sample.metainfo['img_path']))[0]
            path = osp.join(self.out_dir, img_id + '.npz')
            if not self.overwrite and osp.isfile(path):
                self._skipped.append(img_id)
                continue
            labels = [int(c) for c in sample.metainfo['img_labels']]
            cams = sample.pred_cams.data
            save_cam_file(path,
                          cams[[c - 1 for c in labels]].float().cpu().numpy(),
                          labels)
            self._written.append(img_id)

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        """Log a one-line summary (images written and skipped)."""
        seconds = time.perf_counter() - self._start
        ranks = all_gather_object((len(self._written), len(self._skipped)))
        written = sum(w for w, _ in ranks)
        skipped = sum(s for _, s in ranks)
        line = (f'CAMExportHook: {written + skipped} images, {written} '
                f'written to {self.out_dir}, {skipped} skipped (files exist)')
        if skipped:
            line += ' (overwrite=True rewrites them)'
        line += f' in {seconds:.1f} s'
        if get_world_size() > 1:
            line += (f'; written per rank {[w for w, _ in ranks]}, skipped '
                     f'per rank {[s for _, s in ranks]}')
        print_log(line, logger='current')
