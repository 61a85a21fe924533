"""Patient-disjoint train/val/test manifests for leave-one-site-out training.

Test is every image of the left-out site. The other sites' patients are dealt into train and val:
within each (site, label) stratum they are shuffled with the seed and a `val_fraction` share goes to
val, so every training site and class is represented in both. A patient seen at the left-out site
and elsewhere would leak that site into training; their other images are left out, as are images
without a site (both counted).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.manifest import patient_labels
from benchmark.core.errors import DataError
from benchmark.core.files import atomic_path
from benchmark.core.labels import CLASSES

SPLITS = ("train", "val", "test")
PATH_COLUMNS = ("path", "lung_mask")


@dataclass
class SiteSplit:
    site: str
    tables: dict[str, pd.DataFrame]   # train / val / test, each with its `split` column set
    dropped: int = 0                  # images left out: unknown site, or a left-out-site patient elsewhere


@dataclass
class SplitsOutcome:
    out: Path
    paths: dict[str, Path]
    counts: dict[str, dict] = field(default_factory=dict)
    dropped: int = 0


def leave_one_site_out(table: pd.DataFrame, site: str, *, val_fraction: float = 0.2, seed: int = 0,
                       where: str = "manifest") -> SiteSplit:
    """Split a validated manifest table; `site` must be one of its `site` values."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val fraction must be in [0, 1), got {val_fraction}", where="--val-fraction")
    sites = table["site"].astype("string").str.strip() if "site" in table.columns else None
    if sites is None or sites.isna().all():
        raise DataError("the manifest has no 'site' column (or it is empty); leave-one-site-out needs one",
                        where=where)
    known = sorted(sites.dropna().unique())
    if site not in known:
        raise DataError(f"unknown site {site!r}; sites in the data: {', '.join(known)}", where="--leave-out-site")
    if len(known) < 2:
        raise DataError(f"the data has only site {site!r}; nothing is left to train on", where=where)
    table = table.assign(patient_id=table["patient_id"].astype(str))
    is_test = (sites == site).fillna(False).to_numpy()
    test_patients = set(table["patient_id"][is_test])
    leaked = ~is_test & table["patient_id"].isin(test_patients).to_numpy()
    unknown = sites.isna().to_numpy()
    rest = table[~is_test & ~leaked & ~unknown]

    first_site = rest.groupby("patient_id")["site"].first()
    label = patient_labels(rest)
    rng = np.random.default_rng([seed, 0x5EED])
    val_patients: list[str] = []
    strata = pd.DataFrame({"site": first_site, "label": label.reindex(first_site.index)})
    for _, members in strata.groupby(["site", "label"], sort=True):
        ids = np.sort(members.index.to_numpy().astype(str))
        ids = ids[rng.permutation(len(ids))]
        # Round half the time up, half down (by a coin), so small strata do not all lose to one side.
        k = int(np.floor(val_fraction * len(ids) + rng.random()))
        val_patients += ids[:k].tolist()
    is_val = rest["patient_id"].isin(set(val_patients))
    tables = {
        "train": rest[~is_val].assign(split="train"),
        "val": rest[is_val].assign(split="val"),
        "test": table[is_test].assign(split="test"),
    }
    tables = {k: v.reset_index(drop=True) for k, v in tables.items()}
    return SiteSplit(site, tables, dropped=int((leaked | unknown).sum()))


def _relocate(value, root: Path, out: Path):
    """A manifest path re-expressed for a manifest written in `out` (relative when possible)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or str(value) == "":
        return value
    p = Path(str(value))
    if not p.is_absolute():
        p = root / p
    try:
        return Path(os.path.relpath(p, out)).as_posix()
    except ValueError:  # another drive on Windows
        return p.as_posix()


def _counts(t: pd.DataFrame) -> dict:
    return {"images": int(len(t)), "patients": int(t["patient_id"].nunique()),
            "per_class": {c: int((t["label"] == c).sum()) for c in CLASSES},
            "per_site": {str(k): int(v) for k, v in t["site"].value_counts().sort_index().items()}}


def write_splits(dataset, site: str, out: Path, *, val_fraction: float = 0.2, seed: int = 0) -> SplitsOutcome:
    """Write train.csv, val.csv, test.csv and splits.json under `out` for a dataset read from files."""
    manifest = dataset.manifest
    if manifest.root is None:
        raise DataError("this dataset is generated on the fly and has no image files to point manifests at; "
                        "write it first (e.g. `cxrbench synth --out DIR`) and split DIR", where=dataset.name)
    split = leave_one_site_out(manifest.table, site, val_fraction=val_fraction, seed=seed,
                               where=str(manifest.root / "manifest.csv"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out.resolve()
    paths, counts = {}, {}
    for name in SPLITS:
        t = split.tables[name].copy()
        for col in PATH_COLUMNS:
            if col in t.columns:
                t[col] = [_relocate(v, manifest.root, target) for v in t[col]]
        path = out / f"{name}.csv"
        with atomic_path(path) as tmp:
            t.to_csv(tmp, index=False)
        paths[name], counts[name] = path, _counts(t)
    summary = {"source": dataset.name, "manifest_sha256": manifest.sha256, "left_out_site": site,
               "val_fraction": val_fraction, "seed": seed, "dropped_images": split.dropped, "counts": counts}
    (out / "splits.json").write_text(json.dumps(summary, indent=2) + "\n")
    return SplitsOutcome(out, paths, counts, split.dropped)
