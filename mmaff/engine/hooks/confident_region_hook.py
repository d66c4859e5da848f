# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Dict, Optional, Union

from mmaff.models.refiners import BaseRefiner, build_refiner
from mmaff.ops.confident import confident_region_map
from mmaff.registry import HOOKS
from mmaff.utils.io import read_rgb, save_label_png
from .export_hook import BaseExportHook


def write_confident_regions(job: dict) -> None:
    """One image's confident-region map (the per-image work of the hook).

    Args:
        job (dict): ``img_path``, ``path`` (output), ``cams`` (K, H, W),
            ``labels`` (K ids) and ``settings`` (keyword arguments of
            :func:`mmaff.ops.confident_region_map`).
    """
    image = read_rgb(job['img_path'], job['cams'].shape[1:])
    conf = confident_region_map(image, job['cams'], job['labels'],
                                **job['settings'])
    save_label_png(job['path'], conf)


def check_refiner_workers(refiner: BaseRefiner, num_workers: int,
                          owner: str) -> None:
    """A refiner that computes off the CPU runs in the test process.

    Raises:
        ValueError: ``num_workers > 0`` with a GPU refiner (CUDA cannot run
            in the forked worker processes, and needs none).
    """
    if refiner.device.type != 'cpu' and num_workers:
        raise ValueError(
            f'{owner}: the refiner computes on {refiner.device}; it runs in '
            f'the test process: set num_workers=0 (got {num_workers})')


@HOOKS.register_module()
class ConfidentRegionHook(BaseExportHook):
    """Stage 2 during the CAM test run: confident-region maps.

    For each test image of a :class:`mmaff.models.CAMClassifier` test run,
    its CAMs (``pred_cams``, the present classes, rounded to float16 as the
    CAM files store them, so the maps equal those computed from the files)
    become ``<out_dir>/<id>.png``: :func:`mmaff.ops.confident_region_map`
    (background ``(1 - max CAM) ** alpha`` at ``alpha_low`` and
    ``alpha_high``, each refined by the ``refiner`` (the dense CRF by
    default), fusion at the feature stride; 0 confident background, label
    ids confident foreground, 255 unsure). Next to a
    :class:`CAMExportHook`, one pass over train_aug writes the CAM files and
    the maps. A CPU refiner runs in ``num_workers`` processes while the
    model computes the next images (a GPU one, e.g. ``dict(type='PAR',
    device='cuda')``, needs ``num_workers=0``); resuming, atomic writes and
    the summary are :class:`BaseExportHook`'s.
    :class:`mmaff.evaluation.ConfidentRegionMetric` scores the maps.

    Args:
        out_dir (str): Output folder (``handovers.conf``).
        alpha_low (float): Power of the amplified background. Defaults to 4.
        alpha_high (float): Power of the weak background. Defaults to 24
            (the CVPR paper; the authors' released models: 32).
        stride (int): Feature stride of the fusion grid. Defaults to 8.
        refiner (dict | BaseRefiner, optional): The label refiner
            (``dict(type='DenseCRF', ...)`` or ``dict(type='PAR', ...)``;
            see :mod:`mmaff.models.refiners`). Defaults to None: the dense
            CRF with the reference's values.
        crf (dict, optional): Deprecated (DeprecationWarning): keyword
            arguments of :func:`mmaff.ops.dense_crf`, the same as
            ``refiner=dict(type='DenseCRF', **crf)``.
        num_workers (int): Worker processes; 0 works inline. Defaults to 0.
        **kwargs: Other arguments of :class:`BaseExportHook`.
    """

    worker = staticmethod(write_confident_regions)

    def __init__(self,
                 out_dir: str,
                 alpha_low: float = 4,
                 alpha_high: float = 24,
                 stride: int = 8,
                 refiner: Union[None, dict, BaseRefiner] = None,
                 crf: Optional[dict] = None,
                 num_workers: int = 0,
                 **kwargs) -> None:
        if not out_dir:
            raise ValueError('ConfidentRegionHook needs an out_dir, got '
                             f'{out_dir!r}')
        for name, alpha in (('alpha_low', alpha_low), ('alpha_high',
                                                       alpha_high)):
            if isinstance(alpha, bool) or not isinstance(
                    alpha, (int, float)) or not 0 < alpha < float('inf'):
                raise ValueError(f'ConfidentRegionHook: {name} must be a '
                                 f'finite number > 0, got {alpha!r}')
        refiner = build_refiner(refiner, crf, 'ConfidentRegionHook')
        check_refiner_workers(refiner, num_workers, 'ConfidentRegionHook')
        super().__init__([out_dir], num_workers=num_workers, **kwargs)
        self.out_dir = out_dir
        self.refiner = refiner
        self.settings = dict(
            alpha_low=alpha_low,
            alpha_high=alpha_high,
            stride=stride,
            refiner=refiner)

    def outputs(self, sample) -> Dict[str, str]:
        """``<out_dir>/<id>.png``."""
        return dict(
            conf=osp.join(self.out_dir,
                          self.image_id(sample) + '.png'))

    def job(self, sample, todo: Dict[str, str]) -> dict:
        """The present classes' CAMs (float16-rounded) and the settings."""
        labels = [int(c) for c in sample.metainfo['img_labels']]
        cams = sample.pred_cams.data[[c - 1 for c in labels]]
        return dict(
            img_path=sample.metainfo['img_path'],
            path=todo['conf'],
            cams=cams.half().float().cpu().numpy(),
            labels=labels,
            settings=self.settings)
