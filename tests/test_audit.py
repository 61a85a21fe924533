"""The leakage audit: injected duplicates are found and nothing else is; patient overlap, exact copies
across formats, a second dataset, same-patient pairs kept apart from leaks, and the exit code."""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmark import api
from benchmark.audit.leakage import ACROSS_DATASETS, ACROSS_SPLITS, OTHER_PATIENT, SAME_PATIENT
from benchmark.data.synth import SynthConfig, render_case, synth_table
from benchmark.audit.phash import DETAIL_MIN, detail_similarity, fingerprint, hamming, pixel_digest
from tests.helpers import cli
from tests.test_adapters import write_dcm

KINDS = ("jpeg", "resize", "contrast", "crop")
OTHER_SPLIT = {"train": "test", "val": "train", "test": "train"}


def _png16(path: Path, img: np.ndarray) -> None:
    Image.fromarray(np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16)).save(path)


def transformed(kind: str, img: np.ndarray, rng: np.random.Generator, *, crop_frac: float = 0.015):
    """(image, file suffix) for one injected duplicate: re-encoded, resized, re-windowed or cropped."""
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(70, 93)))
        return buf.getvalue(), ".jpg"
    if kind == "resize":
        f = rng.uniform(0.6, 0.9) if rng.random() < 0.7 else rng.uniform(1.2, 1.5)
        h, w = img.shape
        img = np.asarray(Image.fromarray(img.astype(np.float32)).resize((round(w * f), round(h * f)),
                                                                         Image.Resampling.BILINEAR))
    elif kind == "contrast":
        img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.4) * rng.uniform(0.85, 1.0) + rng.uniform(0.0, 0.08)
    elif kind == "crop":
        h, w = img.shape
        k = max(1, round(crop_frac * min(h, w)))
        t, b, left, right = rng.integers(1, k + 1, size=4)
        img = img[t:h - b, left:w - right]
    return np.clip(img, 0, 1), ".png"


def build_injected(out: Path, *, n_distinct: int, image_size: int, per_kind: int, seed: int = 0,
                   crop_frac: float = 0.015, inject: bool = True) -> tuple[Path, set[tuple[str, str]]]:
    """A manifest of `n_distinct` synth images, one per patient (so no two are the same picture), plus
    `per_kind` duplicates of each kind under new image and patient ids in another split. Returns the
    manifest and the true (source, duplicate) pairs."""
    cfg = SynthConfig(n_patients=n_distinct + n_distinct // 4 + 10, image_size=image_size, seed=seed)
    table = synth_table(cfg)
    first = table.groupby("patient_id", sort=True).head(1).head(n_distinct)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    rows, truth, images = [], set(), {}
    for rec in first.itertuples(index=False):
        img = render_case(cfg, int(rec.index)).image
        _png16(out / f"{rec.image_id}.png", img)
        images[rec.image_id] = img
        rows.append({"image_id": rec.image_id, "path": f"{rec.image_id}.png", "label": rec.label,
                     "patient_id": rec.patient_id, "site": rec.site, "split": rec.split})
    if inject:
        sources = rng.choice(len(rows), size=per_kind * len(KINDS), replace=False)
        for k, src in enumerate(sources):
            kind, base = KINDS[k // per_kind], rows[src]
            dup, suffix = transformed(kind, images[base["image_id"]], rng, crop_frac=crop_frac)
            name = f"dup-{kind}-{k:04d}"
            if isinstance(dup, bytes):
                (out / f"{name}{suffix}").write_bytes(dup)
            else:
                _png16(out / f"{name}{suffix}", dup)
            rows.append({"image_id": name, "path": f"{name}{suffix}", "label": base["label"],
                         "patient_id": f"renamed-{k:04d}", "site": base["site"],
                         "split": OTHER_SPLIT[base["split"]]})
            truth.add((base["image_id"], name))
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv", truth


def found_pairs(report) -> set[tuple[str, str]]:
    return {tuple(sorted((p.image_a, p.image_b), key=lambda s: s.startswith("dup-"))) for p in report.pairs}


def test_injected_duplicates_found_without_false_pairs(tmp_path):
    manifest, truth = build_injected(tmp_path / "d", n_distinct=200, image_size=128, per_kind=10)
    report = api.audit(str(manifest), out=tmp_path / "audit")
    found = found_pairs(report)
    recall = len(found & truth) / len(truth)
    assert recall >= 0.95, sorted(truth - found)
    assert found - truth == set()  # no pair among the 200 distinct patients' images
    assert {p.relation for p in report.pairs} == {ACROSS_SPLITS} and all(p.leak for p in report.pairs)
    assert report.exit_code == 1 and report.leaks == len(found)


def test_clean_synth_reports_no_leaks_and_keeps_same_patient_pairs_apart(tmp_path):
    report = api.audit("synth:n_patients=60,image_size=96,seed=3", out=tmp_path / "audit")
    assert report.leaks == 0 and report.exit_code == 0
    assert report.patient_overlap == []
    # Several images of one patient (same anatomy, small pose changes) may match: expected, not leaks.
    assert all(p.relation == SAME_PATIENT and not p.leak for p in report.pairs)
    assert report.datasets[0]["pixels_from"] == "decoded"


def test_patient_in_two_splits_is_a_leak(tmp_path):
    manifest, _ = build_injected(tmp_path / "d", n_distinct=6, image_size=64, per_kind=0, inject=False)
    table = pd.read_csv(manifest)
    table.loc[1, "patient_id"] = table.loc[0, "patient_id"]
    table.loc[1, "split"] = "val" if table.loc[0, "split"] != "val" else "test"
    table.to_csv(manifest, index=False)
    report = api.audit(str(manifest), out=tmp_path / "audit")
    assert [o["patient_id"] for o in report.patient_overlap] == [table.loc[0, "patient_id"]]
    assert report.exit_code == 1


def test_exact_copy_in_another_format_and_dataset(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(40, 56)).astype(np.uint16)
    a, b = tmp_path / "a", tmp_path / "b"
    write_dcm(a / "x.dcm", pixels, PatientID="P1")
    other = rng.integers(0, 4096, size=(40, 56)).astype(np.uint16)
    write_dcm(a / "y.dcm", other)
    b.mkdir()
    (b / "copy.png").write_bytes(_roundtrip_png(a / "x.dcm"))  # the same canonical pixels as a PNG
    pd.DataFrame({"path": ["x.dcm", "y.dcm"], "label": ["typical", "negative"], "patient_id": ["P1", "P2"]}).to_csv(
        a / "manifest.csv", index=False)
    pd.DataFrame({"path": ["copy.png"], "label": ["typical"], "patient_id": ["P1"]}).to_csv(b / "manifest.csv", index=False)
    report = api.audit(str(a / "manifest.csv"), str(b / "manifest.csv"), out=tmp_path / "audit")
    kinds = {(p.kind, p.relation, p.image_a, p.image_b) for p in report.pairs}
    assert kinds == {("exact", ACROSS_DATASETS, "x", "copy")}
    assert report.shared_patients == [{"patient_id": "P1", "datasets": ["a", "b"]}]
    assert report.leaks == 2


def _roundtrip_png(dcm: Path) -> bytes:
    """The decoded canonical image of a DICOM written as a 16-bit PNG (exactly invertible)."""
    from benchmark.data.images import decode_image

    img = decode_image(dcm)
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def test_same_picture_under_two_patient_ids_in_one_split_is_a_leak(tmp_path):
    manifest, _ = build_injected(tmp_path / "d", n_distinct=4, image_size=64, per_kind=0, inject=False)
    table = pd.read_csv(manifest)
    (tmp_path / "d" / "again.png").write_bytes((tmp_path / "d" / table.loc[0, "path"]).read_bytes())
    table.loc[len(table)] = {**table.loc[0].to_dict(), "image_id": "again", "path": "again.png", "patient_id": "new"}
    table.to_csv(manifest, index=False)
    report = api.audit(str(manifest), out=tmp_path / "audit")
    assert [(p.kind, p.relation) for p in report.pairs] == [("exact", OTHER_PATIENT)]
    assert report.exit_code == 1


def test_audit_reads_the_prepared_store(tmp_path):
    manifest, truth = build_injected(tmp_path / "d", n_distinct=40, image_size=96, per_kind=2)
    decoded = api.audit(str(manifest), out=tmp_path / "a1")
    api.prepare(str(manifest), 128)
    shutil.rmtree(Path(os.environ["CXRBENCH_CACHE"]) / "audit")  # the feature cache would answer first
    stored = api.audit(str(manifest), out=tmp_path / "a3")
    assert stored.datasets[0]["pixels_from"] == "prepared store"
    assert found_pairs(stored) == found_pairs(decoded) and found_pairs(stored) <= truth


def test_cli_audit_exit_codes_and_report_files(tmp_path, capsys):
    manifest, _ = build_injected(tmp_path / "d", n_distinct=30, image_size=96, per_kind=1)
    code, out, err = cli(capsys, "audit", "--data", str(manifest), "--out", str(tmp_path / "audit"))
    assert code == 1, err
    assert "LEAKS FOUND" in out and "near duplicates, across splits" in out
    data = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert data["exit_code"] == 1 and data["leaks"] >= 3
    assert (tmp_path / "audit" / "audit.txt").read_text().startswith("leakage audit of d")
    clean, _ = build_injected(tmp_path / "c", n_distinct=20, image_size=64, per_kind=0, inject=False)
    code, out, err = cli(capsys, "audit", "--data", str(clean), "--out", str(tmp_path / "audit2"))
    assert code == 0 and "no leaks (0)" in out


def test_fingerprints_know_the_same_picture_from_another_patient():
    cfg = SynthConfig(n_patients=30, image_size=128, seed=7)
    table = synth_table(cfg)
    firsts = table.groupby("patient_id").head(1)["index"].tolist()
    a, b = (render_case(cfg, i).image for i in firsts[:2])
    jpeg = io.BytesIO()
    Image.fromarray(np.round(a * 255).astype(np.uint8)).save(jpeg, "JPEG", quality=75)
    a_jpeg = np.asarray(Image.open(jpeg), dtype=np.float32) / 255.0
    fa, fb, fj = fingerprint(a), fingerprint(b), fingerprint(a_jpeg)
    assert detail_similarity(fa.thumb, fj.thumb) > 0.97
    assert detail_similarity(fa.thumb, fb.thumb) < DETAIL_MIN  # another patient's film
    assert pixel_digest(a) != pixel_digest(a_jpeg) and pixel_digest(a) == pixel_digest(a.copy())


def test_pixel_digest_is_the_sha256_of_the_quantised_image():
    import hashlib

    for shape in [(3, 5), (300, 700), (1, 1 << 16), (257, 1 << 10)]:  # around its chunk size
        img = np.random.default_rng(shape[1]).random(shape) * 1.2 - 0.1  # float64, some outside [0, 1]
        want = hashlib.sha256(f"{shape[0]}x{shape[1]}:".encode())
        want.update(np.round(np.clip(img.astype(np.float32), 0.0, 1.0) * 65535.0).astype("<u2").tobytes())
        assert pixel_digest(img) == want.digest() == pixel_digest(np.asfortranarray(img)), shape


def test_hamming_with_and_without_native_popcount(monkeypatch):
    a = np.array([0b1011, 2**64 - 1], dtype=np.uint64)
    b = np.array([0b0001, 0], dtype=np.uint64)
    expected = [[2, 3], [63, 64]]
    assert hamming(a, b).tolist() == expected
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # numpy < 2
    assert hamming(a, b).tolist() == expected
