"""The embedded synthetic dataset: determinism, truth masks, class structure, sites, noise, files."""
from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage, stats

from benchmark.data.synth import SynthCase, SynthConfig, render_case, synth_table, write_synth
from benchmark.data.synth import generate as synth_generate
from benchmark.data.synth import table as synth_table_mod
from benchmark.data.synth.canvas import Frame, Pose
from benchmark.data.synth.lesions import sample_lesions
from benchmark.core.errors import DataError
from benchmark.core.labels import CLASSES

SMALL = SynthConfig(n_patients=40, image_size=128, seed=7)


def _clear_caches() -> None:
    synth_generate._patient.cache_clear()
    synth_table_mod.rows.cache_clear()


def _same(a: SynthCase, b: SynthCase) -> bool:
    return (np.array_equal(a.image, b.image) and np.array_equal(a.lung_mask, b.lung_mask)
            and np.array_equal(a.opacity_mask, b.opacity_mask) and a.boxes == b.boxes and a.meta == b.meta)


@lru_cache(maxsize=4)
def _cases_by_class(per_class: int = 40, size: int = 128) -> dict[str, list[SynthCase]]:
    """The first images of `per_class` distinct patients of each true class (no label noise)."""
    cfg = SynthConfig(n_patients=400, image_size=size, seed=11)
    t = synth_table(cfg).drop_duplicates("patient_id")
    return {c: [render_case(cfg, int(i)) for i in t.loc[t.true_label == c, "index"][:per_class]]
            for c in CLASSES}


# --- config and table -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"n_patients": 0}, {"image_size": 32}, {"confound": 1.5}, {"label_noise": -0.1},
    {"marker_label_corr": 2}, {"seed": -1}, {"n_sites": 0}, {"n_patients": 2.5},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(DataError):
        SynthConfig(**kwargs)


def test_config_key_is_stable_and_covers_every_field():
    base = SynthConfig()
    assert base.key() == SynthConfig().key()
    assert len(base.key()) == 16 and int(base.key(), 16) >= 0
    variants = [SynthConfig(n_patients=301), SynthConfig(n_sites=5), SynthConfig(image_size=128),
                SynthConfig(confound=0.6), SynthConfig(label_noise=0.1), SynthConfig(marker_label_corr=0.1),
                SynthConfig(seed=1)]
    keys = {v.key() for v in variants} | {base.key()}
    assert len(keys) == len(variants) + 1


def test_table_columns_and_values():
    t = synth_table(SMALL)
    for col in ("image_id", "index", "patient_id", "study_id", "site", "label", "true_label", "view", "split"):
        assert col in t.columns
    assert list(t["index"]) == list(range(len(t)))
    assert t["image_id"].iloc[3] == "synth-000003" and t["image_id"].is_unique and t["study_id"].is_unique
    assert set(t["label"]) <= set(CLASSES) and set(t["true_label"]) <= set(CLASSES)
    assert set(t["view"]) == {"PA"}
    assert set(t["site"]) <= {"site_a", "site_b", "site_c", "site_d"}
    assert set(t["split"]) <= {"train", "val", "test"}
    assert t["patient_id"].nunique() == SMALL.n_patients


def test_patients_have_one_to_three_images_sharing_site_and_label():
    t = synth_table(SynthConfig(n_patients=300, label_noise=0.2))
    per = t.groupby("patient_id")
    assert set(per.size()) == {1, 2, 3}
    for col in ("site", "label", "true_label", "split"):
        assert (per[col].nunique() == 1).all(), col


def test_splits_are_patient_disjoint_about_60_20_20_with_every_class():
    t = synth_table(SynthConfig(n_patients=600, seed=3))
    patients = t.drop_duplicates("patient_id")
    frac = patients["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.6) < 0.04 and abs(frac["val"] - 0.2) < 0.04 and abs(frac["test"] - 0.2) < 0.04
    assert (t.groupby("patient_id")["split"].nunique() == 1).all()
    for split in ("train", "val", "test"):
        assert set(patients.loc[patients.split == split, "true_label"]) == set(CLASSES)


def _site_label_counts(confound: float) -> pd.DataFrame:
    t = synth_table(SynthConfig(n_patients=3000, confound=confound, seed=5)).drop_duplicates("patient_id")
    return pd.crosstab(t["site"], t["true_label"])


def test_confound_zero_gives_the_same_class_prior_at_every_site():
    counts = _site_label_counts(0.0)
    _, p, _, _ = stats.chi2_contingency(counts.to_numpy())
    priors = counts.div(counts.sum(axis=1), axis=0)
    assert p > 0.001
    assert (priors.max() - priors.min()).max() < 0.1


def test_confound_one_gives_clearly_different_priors():
    counts = _site_label_counts(1.0)
    _, p, _, _ = stats.chi2_contingency(counts.to_numpy())
    priors = counts.div(counts.sum(axis=1), axis=0)
    assert p < 1e-12
    assert (priors.max() - priors.min()).max() > 0.5
    # site k favours class k: a known answer the cross-site suite can rely on
    for k, site in enumerate(["site_a", "site_b", "site_c", "site_d"]):
        assert priors.loc[site].idxmax() == CLASSES[k]


def test_label_noise_flips_about_that_fraction_to_another_class():
    clean = synth_table(SynthConfig(n_patients=4000, seed=2)).drop_duplicates("patient_id")
    noisy = synth_table(SynthConfig(n_patients=4000, seed=2, label_noise=0.3)).drop_duplicates("patient_id")
    assert (clean["label"] == clean["true_label"]).all()
    assert list(clean["true_label"]) == list(noisy["true_label"])   # noise never moves the truth
    flipped = noisy["label"] != noisy["true_label"]
    assert abs(flipped.mean() - 0.3) < 0.03
    # a flip goes to each of the three other classes about equally often
    other = noisy.loc[flipped]
    shift = (other["label"].map(CLASSES.index) - other["true_label"].map(CLASSES.index)) % 4
    assert shift.value_counts(normalize=True).min() > 0.25


# --- rendering: determinism, types, geometry ----------------------------------------------------

def test_same_config_and_index_render_identically_in_any_order():
    idx = [5, 0, 17, 3]
    _clear_caches()
    forward = {i: render_case(SMALL, i) for i in idx}
    _clear_caches()
    backward = {i: render_case(SMALL, i) for i in reversed(idx)}
    for i in idx:
        assert _same(forward[i], backward[i])
        assert _same(forward[i], render_case(SMALL, i))


def test_render_is_identical_in_a_fresh_process():
    case = render_case(SMALL, 9)
    code = ("import hashlib; from benchmark.data.synth import SynthConfig, render_case; "
            "c = render_case(SynthConfig(n_patients=40, image_size=128, seed=7), 9); "
            "print(hashlib.sha256(c.image.tobytes() + c.lung_mask.tobytes() + c.opacity_mask.tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import hashlib
    expected = hashlib.sha256(case.image.tobytes() + case.lung_mask.tobytes() + case.opacity_mask.tobytes())
    assert out.stdout.strip() == expected.hexdigest()


def test_different_seeds_give_different_images():
    a = render_case(SynthConfig(n_patients=10, image_size=128, seed=0), 0)
    b = render_case(SynthConfig(n_patients=10, image_size=128, seed=1), 0)
    assert np.abs(a.image - b.image).mean() > 0.02


def test_images_of_one_patient_share_anatomy_but_not_pixels():
    t = synth_table(SMALL)
    pid = t.groupby("patient_id").size().idxmax()
    i, j = t.index[t.patient_id == pid][:2]
    a, b = render_case(SMALL, int(i)), render_case(SMALL, int(j))
    assert not np.array_equal(a.image, b.image)
    overlap = (a.lung_mask & b.lung_mask).sum() / (a.lung_mask | b.lung_mask).sum()
    assert overlap > 0.75   # same lungs, small pose change


@pytest.mark.parametrize("size", [64, 97, 256])
def test_value_range_dtype_and_shape(size):
    cfg = SynthConfig(n_patients=6, image_size=size, seed=4, marker_label_corr=1.0)
    for i in range(3):
        c = render_case(cfg, i)
        assert c.image.dtype == np.float32 and c.image.shape == (size, size)
        assert np.isfinite(c.image).all() and c.image.min() >= 0.0 and c.image.max() <= 1.0
        assert c.lung_mask.dtype == bool and c.lung_mask.shape == (size, size)
        assert c.opacity_mask.dtype == bool and c.opacity_mask.shape == (size, size)
        assert 0.12 < c.lung_mask.mean() < 0.5


def test_index_out_of_range_is_a_data_error():
    n = len(synth_table(SMALL))
    for bad in (-1, n, 2.0):
        with pytest.raises(DataError):
            render_case(SMALL, bad)


# --- ground truth -------------------------------------------------------------------------------

def test_opacities_lie_inside_the_lungs_and_boxes_enclose_every_component():
    cases = _cases_by_class()
    for group in cases.values():
        for c in group:
            assert not (c.opacity_mask & ~c.lung_mask).any()
            lab, n = ndimage.label(c.opacity_mask)
            assert n == len(c.boxes)
            for sl in ndimage.find_objects(lab):
                r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
                assert any(x1 <= c0 and y1 <= r0 and x2 >= c1 and y2 >= r1 for x1, y1, x2, y2 in c.boxes)
            for x1, y1, x2, y2 in c.boxes:
                assert 0 <= x1 < x2 <= c.image.shape[1] and 0 <= y1 < y2 <= c.image.shape[0]
                assert c.opacity_mask[int(y1):int(y2), int(x1):int(x2)].any()


def test_negative_cases_have_no_opacity_and_others_almost_always_do():
    cases = _cases_by_class()
    assert all(not c.opacity_mask.any() and c.boxes == [] for c in cases["negative"])
    for label in ("typical", "indeterminate", "atypical"):
        with_opacity = np.mean([c.opacity_mask.sum() > 0 for c in cases[label]])
        assert with_opacity >= 0.9, label


def _distribution(c: SynthCase) -> dict[str, float]:
    """Where a case's opacity sits: per lung (split at the midline), height within the lung's
    rows (0 apex .. 1 base) and lateral position within the lung's columns (0 medial .. 1 lateral)."""
    s = c.image.shape[1]
    mid = s // 2
    out = {"sides": 0, "lower": 0.0, "lateral": 0.0, "area": float(c.opacity_mask.sum())}
    rows, cols = np.nonzero(c.opacity_mask)
    if rows.size == 0:
        return out
    lowers, laterals = [], []
    for side in (slice(0, mid), slice(mid, s)):
        lung = np.zeros_like(c.lung_mask)
        lung[:, side] = c.lung_mask[:, side]
        opac = c.opacity_mask & lung
        if not opac.any():
            continue
        out["sides"] += 1
        lr, lc = np.nonzero(lung)
        r, cc = np.nonzero(opac)
        lowers.append((r - lr.min()) / max(lr.max() - lr.min(), 1))
        dist = np.abs(cc - mid)
        lo, hi = np.abs(lc - mid).min(), np.abs(lc - mid).max()
        laterals.append((dist - lo) / max(hi - lo, 1))
    out["lower"] = float(np.concatenate(lowers).mean())
    out["lateral"] = float(np.concatenate(laterals).mean())
    return out


def test_typical_is_bilateral_peripheral_and_lower_zone_on_average():
    d = pd.DataFrame([_distribution(c) for c in _cases_by_class()["typical"]])
    d = d[d.area > 0]
    assert (d.sides == 2).mean() > 0.7
    assert d.lower.mean() > 0.6
    assert d.lateral.mean() > 0.55


def test_indeterminate_is_mostly_unilateral_central_or_upper_and_unlike_typical():
    ind = pd.DataFrame([_distribution(c) for c in _cases_by_class()["indeterminate"]])
    typ = pd.DataFrame([_distribution(c) for c in _cases_by_class()["typical"]])
    ind, typ = ind[ind.area > 0], typ[typ.area > 0]
    lacking_typical = (ind.sides == 1) | (ind.lateral < 0.5) | (ind.lower < 0.5)
    assert lacking_typical.mean() > 0.9
    assert (ind.sides == 1).mean() > 0.5
    assert ind.lower.mean() < typ.lower.mean() - 0.1
    assert ind.lateral.mean() < typ.lateral.mean()
    # ...but the two overlap: some indeterminate cases are bilateral, some typical ones one-sided
    assert (ind.sides == 2).any() and (typ.sides == 1).any()


def test_atypical_has_lobar_nodule_cavity_and_effusion_variants():
    rng = np.random.default_rng(0)
    patterns = pd.Series([sample_lesions("atypical", rng)[1] for _ in range(400)])
    families = patterns.str.split("_").str[0].value_counts(normalize=True)
    for fam in ("lobar", "segment", "nodule", "mass", "cavity", "effusion"):
        assert families.get(fam, 0) > 0.05, fam
    # rendered known answers: a nodule is one small round component; an effusion fills the base
    for c in _cases_by_class()["atypical"]:
        kind = c.meta["pattern"]
        if kind == "nodule":
            lab, n = ndimage.label(c.opacity_mask)
            assert n == 1 and c.opacity_mask.sum() < 0.01 * c.image.size
        if kind.startswith("effusion"):
            rows = np.nonzero(c.opacity_mask)[0]
            lung_rows = np.nonzero(c.lung_mask)[0]
            assert rows.max() > lung_rows.max() - 0.08 * c.image.shape[0]
        if kind.startswith("lobar"):
            assert c.opacity_mask.sum() > 0.1 * c.lung_mask.sum()


def test_anatomy_is_plausible():
    """Aerated lungs darker than the mediastinum and abdomen; clavicles brighter than the apices."""
    for c in _cases_by_class()["negative"][:12]:
        img, lung = c.image, c.lung_mask
        s = img.shape[0]
        rows = np.nonzero(lung.any(axis=1))[0]
        mid = slice(s // 2 - s // 40, s // 2 + s // 40)
        mediastinum = img[rows[len(rows) // 3]: rows[-1], mid].mean()
        abdomen = img[rows[-1] + s // 20: rows[-1] + s // 8, s // 4: 3 * s // 4].mean()
        assert img[lung].mean() < mediastinum - 0.2
        assert img[lung].mean() < abdomen - 0.2
        anat, _, _ = synth_generate._patient(11, c.meta["patient_index"], "negative")
        frame = Frame(s, Pose(**c.meta["pose"]))
        y_med, y_lat, x_lat = anat.clavicle[:3]
        for side in (-1, 1):
            x = anat.cx + side * 0.6 * x_lat
            y = y_med + (y_lat - y_med) * 0.36
            col, row = (int(round(v)) for v in frame.to_pixel(x, y))
            below = int(round(frame.to_pixel(x, y + 0.05)[1]))
            assert img[row, col] > img[below, col] + 0.03


# --- sites and shortcuts ------------------------------------------------------------------------

def test_sites_look_different():
    cfg = SynthConfig(n_patients=60, image_size=128, seed=1)
    t = synth_table(cfg).drop_duplicates("site").sort_values("site")
    metas = [render_case(cfg, int(i)).meta for i in t["index"]]
    assert len({m["border_px"] for m in metas}) >= 2
    assert len({tuple(m["laterality_box"]) for m in metas}) >= 3
    assert len({tuple(m["text_box"]) for m in metas}) >= 2


def test_overlays_and_marker_sit_outside_the_lungs():
    cfg = SynthConfig(n_patients=30, image_size=128, seed=2, marker_label_corr=1.0)
    for i in range(0, 40, 4):
        c = render_case(cfg, i)
        for key in ("laterality_box", "text_box", "marker_box"):
            x1, y1, x2, y2 = c.meta[key]
            assert not c.lung_mask[y1:y2, x1:x2].any(), key


def test_marker_encodes_the_label_at_a_fixed_place():
    cfg = SynthConfig(n_patients=60, image_size=128, seed=3, marker_label_corr=1.0, label_noise=0.2)
    t = synth_table(cfg)
    assert t["has_marker"].all()
    boxes, patches = set(), {}
    for label in CLASSES:
        for i in t.loc[t.label == label, "index"][:2]:
            c = render_case(cfg, int(i))
            assert c.meta["marker_drawn"] and c.meta["marker_class"] == label
            x1, y1, x2, y2 = c.meta["marker_box"]
            boxes.add((x1, y1, x2, y2))
            patch = c.image[y1:y2, x1:x2]
            if label in patches:
                assert np.array_equal(patches[label], patch)   # same glyph for the same label
            patches[label] = patch
    assert len(boxes) == 1
    glyphs = list(patches.values())
    assert all(not np.array_equal(a, b) for k, a in enumerate(glyphs) for b in glyphs[k + 1:])
    off = synth_table(SynthConfig(n_patients=300, marker_label_corr=0.0))
    half = synth_table(SynthConfig(n_patients=1000, marker_label_corr=0.5))
    assert not off["has_marker"].any()
    assert abs(half["has_marker"].mean() - 0.5) < 0.04
    assert not render_case(SynthConfig(n_patients=5, image_size=64), 0).meta["marker_drawn"]


# --- files -------------------------------------------------------------------------------------

def _png_bit_depth(path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return head[24]


def test_write_synth_round_trip(tmp_path):
    cfg = SynthConfig(n_patients=5, image_size=64, seed=9)
    path = write_synth(cfg, tmp_path / "ds")
    assert path == tmp_path / "ds" / "manifest.csv"
    m = pd.read_csv(path)
    for col in ("path", "label", "patient_id", "study_id", "site", "view", "lung_mask", "boxes", "split"):
        assert col in m.columns
    assert len(m) == len(synth_table(cfg))
    for _, row in m.iterrows():
        img_path = tmp_path / "ds" / row["path"]
        mask_path = tmp_path / "ds" / row["lung_mask"]
        assert img_path.is_file() and mask_path.is_file()
        assert _png_bit_depth(img_path) == 16 and _png_bit_depth(mask_path) == 8
        case = render_case(cfg, int(row["image_id"].split("-")[1]))
        pixels = np.asarray(Image.open(img_path)).astype(np.float64) / 65535.0
        assert np.abs(pixels - case.image).max() <= 1 / 65535 + 1e-7
        mask = np.asarray(Image.open(mask_path))
        assert set(np.unique(mask)) <= {0, 255} and np.array_equal(mask > 0, case.lung_mask)
        opacity = np.asarray(Image.open(tmp_path / "ds" / row["opacity_mask"])) > 0
        assert np.array_equal(opacity, case.opacity_mask)
        assert json.loads(row["boxes"]) == case.boxes
        assert row["label"] in CLASSES and row["view"] == "PA"


def test_written_manifest_loads_with_the_harness(tmp_path):
    from benchmark.data.manifest import load_manifest_csv

    path = write_synth(SynthConfig(n_patients=4, image_size=64, seed=1), tmp_path)
    manifest = load_manifest_csv(path)
    assert len(manifest) == len(synth_table(SynthConfig(n_patients=4, image_size=64, seed=1)))
