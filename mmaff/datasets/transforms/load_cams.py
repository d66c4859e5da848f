# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp

from mmcv.transforms import BaseTransform

from mmaff.registry import TRANSFORMS
from mmaff.utils.io import load_cam_file


@TRANSFORMS.register_module()
class LoadCAMs(BaseTransform):
    """Load an image's CAM file, the stage-1 hand-over the walk starts from.

    Reads ``<cam_dir>/<id><suffix>`` (``id``: the image file's stem) with
    :func:`mmaff.utils.io.load_cam_file`, which checks it against the
    image's size and image-level labels and names the file in every error.
    Put it after ``LoadImageFromFile`` (for ``ori_shape``) and add ``cams``
    and ``cam_labels`` to ``PackSegInputs``' ``meta_keys``:
    :class:`mmaff.models.AffinityNet` then walks them in ``predict``.

    Required keys: ``img_path``, ``ori_shape``, ``img_labels``.
    Added keys: ``cams`` ((K, H, W) float32 in [0, 1]), ``cam_labels``
    (the K label ids, in the file's channel order).

    Args:
        cam_dir (str): Folder of the CAM files (``handovers.cams``).
        suffix (str): File suffix. Defaults to '.npz'.
    """

    def __init__(self, cam_dir: str, suffix: str = '.npz') -> None:
        if not cam_dir or not isinstance(cam_dir, str):
            raise ValueError(f'LoadCAMs needs a cam_dir, got {cam_dir!r}')
        self.cam_dir = cam_dir
        self.suffix = suffix

    def transform(self, results: dict) -> dict:
        """Add ``cams`` and ``cam_labels`` of the image to ``results``."""
        for key in ('img_path', 'ori_shape', 'img_labels'):
            if key not in results:
                raise KeyError(f'LoadCAMs needs {key!r} (load the image and '
                               'its image-level labels first)')
        img_id = osp.splitext(osp.basename(results['img_path']))[0]
        path = osp.join(self.cam_dir, img_id + self.suffix)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'no CAM file for image {img_id} ({results["img_path"]}): '
                f'{path} does not exist (export the CAMs with the stage-1 '
                'config first)')
        cams, labels = load_cam_file(
            path,
            expected_shape=tuple(results['ori_shape'][:2]),
            image_labels=[int(c) for c in results['img_labels']])
        results['cams'] = cams
        results['cam_labels'] = tuple(int(c) for c in labels)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(cam_dir={self.cam_dir!r}, '
                f'suffix={self.suffix!r})')
