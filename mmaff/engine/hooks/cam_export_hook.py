# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook

from mmaff.registry import HOOKS
from mmaff.utils.io import save_cam_file


@HOOKS.register_module()
class CAMExportHook(Hook):
    """Write each test image's normalised CAMs to ``<out_dir>/<id>.npz``.

    Only the classes present in the image-level labels are stored (float16,
    full image resolution, see :mod:`mmaff.utils.io`); each file is written
    atomically. To resume an interrupted export without recomputing finished
    images, give the test dataset ``skip_done=dict(dir=out_dir,
    suffix='.npz')``.

    Args:
        out_dir (str): Output folder.
    """

    priority = 'NORMAL'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        """Save the CAMs of the batch's predictions."""
        for sample in outputs or []:
            labels = [int(c) for c in sample.metainfo['img_labels']]
            cams = sample.pred_cams.data
            img_id = osp.splitext(osp.basename(sample.metainfo['img_path']))[0]
            save_cam_file(
                osp.join(self.out_dir, img_id + '.npz'),
                cams[[c - 1 for c in labels]].float().cpu().numpy(), labels)
