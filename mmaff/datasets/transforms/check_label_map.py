# Copyright (c) mmaff contributors. All rights reserved.
from mmcv.transforms import BaseTransform

from mmaff.registry import TRANSFORMS
from mmaff.utils.io import check_label_map, check_label_png_mode


@TRANSFORMS.register_module()
class CheckLabelMap(BaseTransform):
    """Refuse a label map that does not fit its image, naming the file.

    Placed right after ``LoadAnnotations`` (which decodes any PNG to uint8
    without a check), it applies the checks of
    :func:`mmaff.utils.io.load_label_png` to the map just loaded:

    * the file is single-channel (P or L mode, from its header): an RGB
      rendering, an alpha channel or a 16-bit map is refused;
    * its size equals the image's (``ori_shape``): a larger map would train
      on misaligned labels, a smaller one fail later without a name;
    * its ids are ``0..num_classes - 1`` or ``ignore_index``.

    :class:`mmaff.datasets.PseudoLabelDataset` inserts it after every
    ``LoadAnnotations`` of its pipeline; configs need not name it.

    Required keys: gt_seg_map, seg_map_path, ori_shape (optional: without
    it, i.e. without an image loaded first, the size is not checked).

    Args:
        num_classes (int): Number of classes, background included.
        ignore_index (int): The ignored id. Defaults to 255.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError('CheckLabelMap: num_classes must be an int >= '
                             f'1, got {num_classes!r}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        """Check ``results['gt_seg_map']`` and its file.

        Args:
            results (dict): The result dict after ``LoadAnnotations``.

        Returns:
            dict: ``results``, unchanged.
        """
        path = results['seg_map_path']
        check_label_png_mode(path)
        shape = results.get('ori_shape')
        check_label_map(
            results['gt_seg_map'],
            path,
            expected_shape=None if shape is None else tuple(shape[:2]),
            num_classes=self.num_classes,
            ignore_index=self.ignore_index)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
