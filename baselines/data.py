"""Training data from any dataset spec: rows chosen for training and validation, decoded through the
harness's own path (decode, letterbox into the model's input) so a model is trained on exactly what
`cxrbench run` will feed it.

Workers only decode and letterbox; augmentation runs batched on the training device (augment.py).
Each sample carries two segmentation targets, opacity and lungs, with a flag for whether each is known:
synth renders both; elsewhere opacity comes from the manifest's boxes (rasterized, filled) and lungs
from its `lung_mask` column.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from torch.utils.data import Dataset as TorchDataset

from benchmark.data.dataset import Dataset, SynthSource
from benchmark.core.errors import CxrbenchError, DataError
from benchmark.core.labels import CLASSES

SEG_CHANNELS: tuple[str, ...] = ("opacity", "lung")


@dataclass
class TrainRows:
    """Which manifest rows train and validate, and what was held out."""

    dataset: Dataset
    train: np.ndarray
    val: np.ndarray
    left_out_site: str | None = None
    left_out_images: int = 0       # with a site left out: its images and any of its patients' others
    split_rule: str = ""

    def class_counts(self) -> np.ndarray:
        labels = self.dataset.table["label"].to_numpy()[self.train]
        return np.array([(labels == c).sum() for c in CLASSES], dtype=np.int64)

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights (n / (K * n_c)) for the class-weighted cross-entropy."""
        counts = self.class_counts()
        return torch.tensor(counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), dtype=torch.float32)

    def seg_trained(self) -> list[str]:
        """The segmentation channels with a target for some training image."""
        lungs = isinstance(self.dataset.source, SynthSource) or bool(
            self.dataset.table["lung_mask"].iloc[self.train].notna().any())
        return [c for c, ok in zip(SEG_CHANNELS, (has_opacity_targets(self.dataset), lungs)) if ok]

    def summary(self) -> dict:
        return {"train_images": len(self.train), "val_images": len(self.val),
                "train_class_counts": dict(zip(CLASSES, map(int, self.class_counts()))),
                "split_rule": self.split_rule, "left_out_site": self.left_out_site,
                "left_out_images": int(self.left_out_images)}


def select_rows(dataset: Dataset, *, leave_out_site: str | None, val_fraction: float, seed: int) -> TrainRows:
    """Train on split == train (val on split == val); without splits, hold out patients at random.

    Rows marked test are never used. `leave_out_site` follows `cxrbench splits` (benchmark/data/splits.py):
    the site's images are the test set, every patient seen there is removed from training, and the
    other sites' patients are dealt into train and val by site and label.
    """
    table = dataset.table
    if leave_out_site is not None:
        from benchmark.data.splits import leave_one_site_out

        split = leave_one_site_out(table, leave_out_site, val_fraction=val_fraction, seed=seed, where=dataset.name)
        position = pd.Series(np.arange(len(table)), index=table["image_id"].to_numpy())
        train, val = (position.loc[split.tables[k]["image_id"].to_numpy()].to_numpy() for k in ("train", "val"))
        rule = f"leave site {leave_out_site!r} out (benchmark.data.splits), {val_fraction:.0%} of patients to val"
        return TrainRows(dataset, np.sort(train), np.sort(val), leave_out_site,
                         len(table) - len(train) - len(val), rule)
    split = table["split"].astype("string").str.lower().to_numpy(dtype=object, na_value=None)
    if any(s == "train" for s in split):
        train = split == "train"
        val = split == "val"
        rule = "manifest split: train / val"
        if not val.any():
            train, val = _patient_holdout(table, train, val_fraction, seed)
            rule = f"manifest split train, {val_fraction:.0%} of its patients held out for validation"
    else:
        train, val = _patient_holdout(table, split != "test", val_fraction, seed)
        rule = f"{val_fraction:.0%} of patients held out for validation (no split column)"
    if not train.any():
        raise DataError("no training images are left (check the split column)", where=dataset.name)
    return TrainRows(dataset, np.flatnonzero(train), np.flatnonzero(val), None, 0, rule)


def _patient_holdout(table, usable: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    patients = np.array(sorted(set(table.loc[usable, "patient_id"])), dtype=object)
    rng = np.random.default_rng([seed, 7])
    n_val = round(fraction * len(patients)) if len(patients) > 1 else 0
    held = set(rng.permutation(patients)[:n_val])
    in_val = table["patient_id"].isin(held).to_numpy() & usable
    return usable & ~in_val, in_val


def has_opacity_targets(dataset: Dataset) -> bool:
    if isinstance(dataset.source, SynthSource):
        return True
    return "boxes" in dataset.manifest.explicit and bool(dataset.table["boxes"].notna().any())


class Samples(TorchDataset):
    """Row k -> (image [1,S,S] float in [0,1], label, seg [2,S,S] uint8 (size 0 without with_seg),
    seg_known [2] bool, error).

    Errors travel as strings (as in the runner) so the main process reports one line naming the row.
    """

    def __init__(self, dataset: Dataset, rows: np.ndarray, size: int, *, with_seg: bool):
        self.dataset, self.rows, self.size, self.with_seg = dataset, np.asarray(rows), int(size), with_seg
        self.labels = np.array([CLASSES.index(c) for c in dataset.table["label"]], dtype=np.int64)
        # Where a dataset has boxes at all, an image without any is known to be free of opacity.
        self.boxes_known = with_seg and has_opacity_targets(dataset)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        i = int(self.rows[k])
        s = self.size
        try:
            image, seg, known = self._load(i)
            return torch.from_numpy(image)[None], int(self.labels[i]), seg, known, ""
        except CxrbenchError as exc:
            err = f"row {i + 2}: {exc}"
        except Exception as exc:  # noqa: BLE001  (a decoder bug must still name its row)
            err = f"row {i + 2}: cannot decode image ({type(exc).__name__}: {exc})"
        return torch.zeros((1, s, s)), 0, self._empty_seg(), torch.zeros(2, dtype=torch.bool), err

    def _empty_seg(self) -> torch.Tensor:
        # Baselines without a segmentation head get a 0-size target: nothing to collate or copy.
        shape = (2, self.size, self.size) if self.with_seg else (0,)
        return torch.zeros(shape, dtype=torch.uint8)

    def _load(self, i: int):
        from benchmark.data.geometry import (
            letterbox,
            resize_image,
            resize_mask,
            transform_boxes,
        )

        s = (self.size, self.size)
        seg = self._empty_seg()
        known = torch.zeros(2, dtype=torch.bool)
        source = self.dataset.source
        if isinstance(source, SynthSource):
            from benchmark.data.synth import render_case

            case = render_case(source.cfg, int(source.indices[i]))  # one render gives image and masks
            image, lung, opacity = case.image, case.lung_mask, case.opacity_mask
        else:
            image = source.image(i)
            lung = source.lung_mask(i) if self.with_seg else None
            opacity = None
        lb = letterbox(image.shape, s)
        out = np.ascontiguousarray(resize_image(image, lb), dtype=np.float32)
        if not self.with_seg:
            return out, seg, known
        if opacity is not None:
            seg[0] = torch.from_numpy(resize_mask(opacity, lb))
            known[0] = True
        elif self.boxes_known:
            seg[0] = torch.from_numpy(rasterize_boxes(transform_boxes(self.dataset.boxes(i), lb), s))
            known[0] = True
        if lung is not None:
            if lung.shape != image.shape:
                raise DataError(f"lung mask is {lung.shape[0]}x{lung.shape[1]} but the image is "
                                f"{image.shape[0]}x{image.shape[1]}")
            seg[1] = torch.from_numpy(resize_mask(lung, lb))
            known[1] = True
        return out, seg, known


def rasterize_boxes(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Filled boxes (x1, y1, x2, y2 in pixel edges) as a bool mask: a pixel is in when its centre is."""
    mask = np.zeros(hw, dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, c1 = int(np.ceil(x1 - 0.5)), int(np.ceil(x2 - 0.5))
        r0, r1 = int(np.ceil(y1 - 0.5)), int(np.ceil(y2 - 0.5))
        mask[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = True
    return mask


def make_loader(samples: Samples, *, batch_size: int, train: bool, workers: int, seed: int,
                world_size: int = 1, rank: int = 0, pin_memory: bool = False) -> DataLoader:
    """Shuffled, drop-last batches for training (a DistributedSampler under torchrun); in order for validation."""
    sampler = None
    if train:
        if world_size > 1:
            sampler = DistributedSampler(samples, num_replicas=world_size, rank=rank, shuffle=True,
                                         seed=seed, drop_last=True)
        else:
            sampler = RandomSampler(samples, generator=torch.Generator().manual_seed(seed))
        if len(samples) < batch_size * world_size:
            raise DataError(f"{len(samples)} training images are fewer than one batch "
                            f"({batch_size} x {world_size} processes); lower --batch-size", where="--batch-size")
    return DataLoader(samples, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=train,
                      num_workers=workers, pin_memory=pin_memory, persistent_workers=workers > 0 and train,
                      prefetch_factor=4 if workers > 0 else None)


def first_error(errors) -> str | None:
    return next((e for e in errors if e), None)
