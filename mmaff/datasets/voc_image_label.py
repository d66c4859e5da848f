# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import List, Optional

from mmaff.registry import DATASETS
from mmaff.utils.io import read_split
from .base_voc import OwnClassesVOCDataset
from .image_labels import labels_from_mask, labels_from_xml, read_label_file


@DATASETS.register_module()
class VOCImageLabelDataset(OwnClassesVOCDataset):
    """Pascal VOC (+ SBD) with image-level labels for weak supervision.

    Every sample carries ``img_labels``: the sorted label ids (1..C) of the
    classes present in the image, from one explicit source. Segmentation
    masks, when ``data_prefix['seg_map_path']`` is set, are only used for
    evaluation (and by ``label_source='mask'``).

    Args:
        ann_file (str): Split file (one image id a line), e.g.
            ``ImageSets/Segmentation/trainaug.txt``.
        label_source (str): ``'xml'`` (VOC ``Annotations/<id>.xml``, every
            object, difficult included), ``'mask'`` (classes present in the
            segmentation mask other than 0 and 255) or ``'file'`` (a label
            file, see :mod:`mmaff.datasets.image_labels`). Defaults to
            ``'xml'``.
        label_file (str, optional): The label file for ``'file'``, relative
            to ``data_root``.
        xml_dir (str): Folder of the XML files, relative to ``data_root``.
            Defaults to ``'Annotations'``.
        skip_done (dict, optional): ``dict(dir=..., suffix=...)``: leave out
            the images whose output ``<dir>/<id><suffix>`` exists, so that an
            interrupted export resumes without redoing work. When images are
            left out, ``metainfo['skip_done']`` = ``dict(dir=...,
            split_size=M, skipped=K)`` tells the metrics
            (:class:`mmaff.evaluation.CAMMetric`,
            :class:`mmaff.evaluation.PseudoLabelMetric`) that their figure
            covers only M - K of the M images of the split.
        holdout_file (str, optional): Split file, relative to ``data_root``,
            of held-out images: labelled images on which settings are chosen
            (e.g. the CAM background threshold). Each sample carries
            ``holdout`` (bool; add it to ``PackSegInputs``' ``meta_keys``):
            mmaff's metrics choose on these images and leave them out of the
            reported figures. Defaults to None (no image is held out).
        **kwargs: Passed to :class:`OwnClassesVOCDataset` (``data_root``,
            ``data_prefix``, ``pipeline``, ``metainfo`` with custom
            ``classes``: background first, in the order of the mask ids,
            never remapped, ...).
    """

    def __init__(self,
                 ann_file: str,
                 label_source: str = 'xml',
                 label_file: Optional[str] = None,
                 xml_dir: str = 'Annotations',
                 skip_done: Optional[dict] = None,
                 holdout_file: Optional[str] = None,
                 **kwargs) -> None:
        if label_source not in ('xml', 'mask', 'file'):
            raise ValueError(f"label_source must be 'xml', 'mask' or "
                             f"'file', got {label_source!r}")
        if label_source == 'file' and not label_file:
            raise ValueError("label_source='file' needs label_file")
        self.label_source = label_source
        self.label_file = label_file
        self.xml_dir = xml_dir
        self.skip_done = skip_done
        self.holdout_file = holdout_file
        super().__init__(ann_file=ann_file, **kwargs)

    def _join(self, path: Optional[str]) -> Optional[str]:
        if path and self.data_root and not osp.isabs(path):
            return osp.join(self.data_root, path)
        return path

    def load_data_list(self) -> List[dict]:
        """Load the split with images, masks and image-level labels.

        Returns:
            list[dict]: Data infos with ``img_id`` and ``img_labels``.
        """
        data_list = super().load_data_list()
        classes = self.metainfo['classes']
        file_labels = (
            read_label_file(self._join(self.label_file), classes)
            if self.label_source == 'file' else None)
        holdout = frozenset(read_split(self._join(
            self.holdout_file))) if self.holdout_file else frozenset()
        for info in data_list:
            img_id = info['img_id']
            info['holdout'] = img_id in holdout
            if self.label_source == 'xml':
                labels = labels_from_xml(
                    osp.join(self._join(self.xml_dir), img_id + '.xml'),
                    classes)
            elif self.label_source == 'mask':
                if 'seg_map_path' not in info:
                    raise ValueError("label_source='mask' needs "
                                     "data_prefix['seg_map_path']")
                labels = labels_from_mask(info['seg_map_path'], len(classes),
                                          self.ignore_index)
            else:
                if img_id not in file_labels:
                    raise KeyError(f'image {img_id!r} has no line in the '
                                   f'label file {self._join(self.label_file)}')
                labels = file_labels[img_id]
            info['img_labels'] = tuple(labels)
        return data_list

    def filter_data(self) -> List[dict]:
        """Leave out finished images when ``skip_done`` is set (and record
        how many in ``metainfo['skip_done']``).

        Returns:
            list[dict]: The data infos still to process.
        """
        if not self.skip_done:
            return self.data_list
        folder = self.skip_done['dir']
        suffix = self.skip_done.get('suffix', '.png')
        todo = [
            info for info in self.data_list
            if not osp.isfile(osp.join(folder, info['img_id'] + suffix))
        ]
        if not todo:
            raise ValueError(
                f'skip_done: every image of {self.ann_file} already has its '
                f'output in {folder} (*{suffix}); nothing left to do')
        if len(todo) < len(self.data_list):
            self._metainfo['skip_done'] = dict(
                dir=folder,
                split_size=len(self.data_list),
                skipped=len(self.data_list) - len(todo))
        return todo
