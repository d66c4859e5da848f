# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import List

from mmseg.datasets import PascalVOCDataset

from mmaff.utils.io import check_unique_ids, voc_palette


class OwnClassesVOCDataset(PascalVOCDataset):
    """VOC layout with the dataset's own classes and checked file lists.

    The base of mmaff's datasets. Unlike mmseg's VOC dataset, a custom
    ``metainfo=dict(classes=...)`` is never remapped onto VOC's classes: it
    names the dataset's own classes (background first) in the order of the
    ids its masks use. The palette defaults to the VOC colour map. Loading
    fails early, naming the file, on a missing or empty split file or a
    missing image, or an image listed twice.
    """

    @classmethod
    def get_label_map(cls, new_classes=None) -> None:
        """No label remapping: masks hold the ids of ``classes`` as is."""
        return None

    def _update_palette(self) -> list:
        """The given palette, else the VOC colour map cut to the classes."""
        palette = self._metainfo.get('palette', [])
        num = len(self._metainfo['classes'])
        if len(palette) == num:
            return list(palette)
        return voc_palette(max(num, 1)).tolist()

    def load_data_list(self) -> List[dict]:
        """Load the split; every listed image must exist.

        Returns:
            list[dict]: Data infos with ``img_id``.
        """
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'split file not found: {self.ann_file}')
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'split file {self.ann_file} lists no images')
        check_unique_ids([info['img_path'] for info in data_list],
                         self.ann_file)
        for info in data_list:
            if not osp.isfile(info['img_path']):
                raise FileNotFoundError(
                    f"image not found: {info['img_path']} (listed in "
                    f'{self.ann_file})')
            info['img_id'] = osp.splitext(osp.basename(info['img_path']))[0]
        return data_list
