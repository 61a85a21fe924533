"""A dataset is a manifest plus a source of canonical images.

Files on disk and the embedded generator look the same to the runner: both answer `image(i)`,
`lung_mask(i)` and `boxes(i)` for row i of the manifest, in the original image's pixels.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from benchmark.data.manifest import Manifest, load_manifest_csv, resolve_path, table_sha256
from benchmark.core.errors import DataError
from benchmark.core.registry import DATASETS
from benchmark.core.specs import DatasetSpec


class ImageSource(Protocol):
    def fingerprints(self) -> np.ndarray: ...  # int64 per row; changes whenever its pixels could have
    def image(self, i: int) -> np.ndarray: ...
    def lung_mask(self, i: int) -> np.ndarray | None: ...


@dataclass
class Dataset:
    manifest: Manifest
    source: ImageSource
    description: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def table(self) -> pd.DataFrame:
        return self.manifest.table

    def __len__(self) -> int:
        return len(self.manifest)

    def boxes(self, i: int) -> np.ndarray:
        """Opacity boxes of row i as an [N, 4] array (x1, y1, x2, y2) in original pixels."""
        value = self.table["boxes"].iat[i]
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or value == "":
            return np.zeros((0, 4), dtype=np.float32)
        boxes = json.loads(value) if isinstance(value, str) else value
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class FileSource:
    """Decodes the manifest's files (DICOM, PNG, JPEG) on demand."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def fingerprints(self) -> np.ndarray:
        """Size and modification time of each file, so a cache notices an image replaced in place.

        A missing file is not an error here: it is reported with its row when it is decoded, after
        the images before it have been computed and cached.
        """
        out = np.zeros(len(self.manifest), dtype=np.int64)
        for i, value in enumerate(self.manifest.table["path"]):
            try:
                st = os.stat(resolve_path(self.manifest, value))
            except OSError:
                continue
            digest = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}".encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little", signed=True)
        return out

    def image(self, i: int) -> np.ndarray:
        from benchmark.data.images import decode_image

        return decode_image(resolve_path(self.manifest, self.manifest.table["path"].iat[i]))

    def lung_mask(self, i: int) -> np.ndarray | None:
        value = self.manifest.table["lung_mask"].iat[i]
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or value == "":
            return None
        from benchmark.data.images import decode_mask

        return decode_mask(resolve_path(self.manifest, value))


def load_csv_dataset(path: str | Path) -> Dataset:
    manifest = load_manifest_csv(path)
    return Dataset(manifest, FileSource(manifest), description=f"manifest {path}")


def resolve_dataset(spec: str | None) -> Dataset:
    """A dataset from a spec: a registered name (`synth`, `synth:n_patients=200,seed=3`),
    `NAME:PATH` for an adapter, a manifest CSV, or a folder holding `manifest.csv`."""
    spec = spec or "synth"
    name, _, arg = spec.partition(":")
    if name in DATASETS:
        return DATASETS.get(name)(arg or None)
    path = Path(spec)
    if path.is_dir() and (path / "manifest.csv").is_file():
        return load_csv_dataset(path / "manifest.csv")
    if path.is_file():
        return load_csv_dataset(path)
    if path.suffix.lower() == ".csv" or path.is_dir():
        raise DataError("manifest file not found" if not path.is_dir() else "folder has no manifest.csv",
                        where=str(path))
    raise DataError(
        f"no dataset named {name!r} and no such file; available datasets: {', '.join(DATASETS.names())}, "
        "or a path to a manifest CSV",
        where=spec,
    )


# --- the embedded synthetic dataset -----------------------------------------------------------

class SynthSource:
    def __init__(self, cfg, table: pd.DataFrame):
        self.cfg = cfg
        self.indices = table["index"].to_numpy()

    def fingerprints(self) -> np.ndarray:
        return np.zeros(len(self.indices), dtype=np.int64)  # a pure function of the config in the manifest

    def image(self, i: int) -> np.ndarray:
        from benchmark.data.synth import render_case

        return render_case(self.cfg, int(self.indices[i])).image

    def lung_mask(self, i: int) -> np.ndarray | None:
        from benchmark.data.synth import render_case

        return render_case(self.cfg, int(self.indices[i])).lung_mask


def parse_synth_options(arg: str | None, **defaults: object):
    """`n_patients=200,seed=3,confound=0.8` -> SynthConfig, with types taken from the dataclass."""
    from benchmark.data.synth import SynthConfig

    kinds = {f.name: f.type for f in fields(SynthConfig)}
    values: dict[str, object] = dict(defaults)
    for part in filter(None, (arg or "").split(",")):
        key, eq, raw = part.partition("=")
        key = key.strip()
        if not eq or key not in kinds:
            raise DataError(f"unknown synth option {part!r}; options: {', '.join(kinds)}", where="--data")
        kind = str(kinds[key])
        try:
            values[key] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
        except ValueError as exc:
            raise DataError(f"synth option {key} needs a {kind}, got {raw!r}", where="--data") from exc
    return SynthConfig(**values)


SYNTH_EVAL_PATIENTS = 300  # about 600 images: the default `cxrbench run` stays quick on two cores


def synth_dataset(arg: str | None = None) -> Dataset:
    from benchmark.data.synth import synth_table

    cfg = parse_synth_options(arg, n_patients=SYNTH_EVAL_PATIENTS)
    table = synth_table(cfg).copy()
    table["path"] = [f"synth://{cfg.key()}/{i}" for i in table["index"]]
    # The generator knows the lungs and lesions of every image, so masks and boxes are always there.
    table["lung_mask"] = [f"synth-mask://{cfg.key()}/{i}" for i in table["index"]]
    if "boxes" not in table.columns:
        table["boxes"] = pd.NA
    manifest = Manifest(
        name="synth" if not arg else f"synth[{arg}]",
        table=table.reset_index(drop=True),
        root=None,
        sha256=table_sha256(table),
        explicit=frozenset({"patient_id", "study_id", "site", "view", "split", "lung_mask"}),
    )
    return Dataset(manifest, SynthSource(cfg, manifest.table), description=f"synth {cfg}")


# Registered through this distribution's `cxrbench.datasets` entry point (pyproject.toml).
SYNTH = DatasetSpec("synth", synth_dataset, "embedded synthetic CXR data with known truth (synth:KEY=VALUE,...)")
