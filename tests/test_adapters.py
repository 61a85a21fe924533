"""Dataset adapters on miniature trees in each collection's real layout and file formats, and on
broken trees: every problem is a one-line DataError or a DataWarning whose list file names the rows."""
from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from benchmark.data.adapters import DataWarning
from benchmark.data.dataset import resolve_dataset
from benchmark.data.images import decode_image
from benchmark.core.errors import DataError
from tests.helpers import CANONICAL, TinyNet, card, cli, save_model

H, W = 48, 64
RAMP = (np.arange(H * W).reshape(H, W) * 3 % 4000).astype(np.uint16)


def write_dcm(path: Path, pixels: np.ndarray = RAMP, *, photometric: str = "MONOCHROME2", syntax: str = "raw",
              **tags) -> Path:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = tags.pop("SOPInstanceUID", generate_uid())
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CR"
    ds.set_pixel_data(pixels, photometric, 12 if pixels.dtype == np.uint16 else 8, generate_instance_uid=False)
    for key, value in tags.items():
        setattr(ds, key, value)
    if syntax == "rle":
        ds.compress(RLELossless)
    elif syntax == "j2k":  # JPEG 2000 lossless, encoded by Pillow and encapsulated
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG2000", no_jp2=True, irreversible=False)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def catch(fn, *args):
    """Run fn, returning (result, [DataWarning messages])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def listed(message: str) -> pd.DataFrame:
    """The skipped-names file a warning points to."""
    path = re.search(r"names listed in (\S+\.csv)", message).group(1)
    return pd.read_csv(path)


# --- SIIM-FISABIO-RSNA ----------------------------------------------------------------------------

def siim_tree(root: Path) -> dict:
    uid = {k: generate_uid() for k in ("sA", "sB", "sC", "seA", "seB", "seC", "i1", "i2", "i3", "i4")}
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "id": [f"{uid['sA']}_study", f"{uid['sB']}_study", f"{uid['sC']}_study"],
        "Negative for Pneumonia": [0, 1, 0], "Typical Appearance": [1, 0, 0],
        "Indeterminate Appearance": [0, 0, 1], "Atypical Appearance": [0, 0, 0],
    }).to_csv(root / "train_study_level.csv", index=False)
    pd.DataFrame({
        "id": [f"{uid[i]}_image" for i in ("i1", "i2", "i3", "i4")],
        "boxes": ["[{'x': 10.5, 'y': 4.0, 'width': 20.0, 'height': 12.5}]", "", "", ""],
        "label": ["opacity 1 10.5 4 30.5 16.5", "opacity 1 1 2 11 12", "none 1 0 0 1 1", "none 1 0 0 1 1"],
        "StudyInstanceUID": [uid["sA"], uid["sA"], uid["sB"], uid["sC"]],
    }).to_csv(root / "train_image_level.csv", index=False)
    d = root / "train"
    write_dcm(d / uid["sA"] / uid["seA"] / f"{uid['i1']}.dcm", photometric="MONOCHROME1", PatientID="P1",
              InstitutionName="Hospital A", ViewPosition="PA", SOPInstanceUID=uid["i1"])
    write_dcm(d / uid["sA"] / uid["seA"] / f"{uid['i2']}.dcm", syntax="rle", PatientID="P1",
              Manufacturer="ACME", ManufacturerModelName="DR-1", SOPInstanceUID=uid["i2"])
    write_dcm(d / uid["sB"] / uid["seB"] / f"{uid['i3']}.dcm", syntax="j2k", PatientID="P2",
              Manufacturer="ACME", ManufacturerModelName="DR-1", ViewPosition="AP", SOPInstanceUID=uid["i3"])
    write_dcm(d / uid["sC"] / uid["seC"] / f"{uid['i4']}.dcm", (RAMP // 16).astype(np.uint8),
              SOPInstanceUID=uid["i4"])
    return uid


def test_siim_maps_labels_patients_sites_boxes_and_studies(tmp_path):
    uid = siim_tree(tmp_path)
    ds, warned = catch(resolve_dataset, f"siim:{tmp_path}")
    assert warned == []
    t = ds.table.set_index("image_id")
    assert len(t) == 4
    assert t.loc[uid["i1"], "label"] == "typical" and t.loc[uid["i2"], "label"] == "typical"
    assert t.loc[uid["i3"], "label"] == "negative" and t.loc[uid["i4"], "label"] == "indeterminate"
    assert t.loc[uid["i1"], "patient_id"] == "P1" and t.loc[uid["i4"], "patient_id"] == uid["sC"]
    assert t.loc[uid["i1"], "study_id"] == t.loc[uid["i2"], "study_id"] == uid["sA"]
    assert t.loc[uid["i1"], "site"] == "Hospital A" and t.loc[uid["i2"], "site"] == "ACME DR-1"
    assert t.loc[uid["i2"], "scanner"] == "ACME DR-1" and t.loc[uid["i3"], "view"] == "AP"
    assert json.loads(t.loc[uid["i1"], "boxes"]) == [[10.5, 4.0, 30.5, 16.5]]  # x, y, w, h -> corners
    assert json.loads(t.loc[uid["i2"], "boxes"]) == [[1.0, 2.0, 11.0, 12.0]]    # from `label`
    assert json.loads(t.loc[uid["i3"], "boxes"]) == []
    assert {"patient_id", "study_id", "site", "boxes"} <= ds.manifest.explicit


def test_siim_images_decode_monochrome1_and_compressed(tmp_path):
    uid = siim_tree(tmp_path)
    ds = resolve_dataset(f"siim:{tmp_path}")
    rows = {image_id: k for k, image_id in enumerate(ds.table["image_id"])}
    mono1, rle, j2k = (ds.source.image(rows[uid[i]]) for i in ("i1", "i2", "i3"))
    plain = decode_image(write_dcm(tmp_path / "plain.dcm"))
    np.testing.assert_array_equal(rle, plain)       # RLE Lossless: the same pixels
    np.testing.assert_array_equal(j2k, plain)       # JPEG 2000 lossless too
    np.testing.assert_allclose(mono1, 1.0 - plain, atol=1e-6)  # MONOCHROME1 inverted: air stays dark


def test_siim_missing_column_is_an_error_naming_file_and_column(tmp_path):
    siim_tree(tmp_path)
    study = pd.read_csv(tmp_path / "train_study_level.csv").drop(columns=["Atypical Appearance"])
    study.to_csv(tmp_path / "train_study_level.csv", index=False)
    with pytest.raises(DataError, match=r"train_study_level\.csv: required column 'Atypical Appearance'"):
        resolve_dataset(f"siim:{tmp_path}")


def test_siim_broken_rows_are_skipped_with_counts_and_a_list(tmp_path):
    uid = siim_tree(tmp_path)
    images = pd.read_csv(tmp_path / "train_image_level.csv", keep_default_na=False)
    ghost, corrupt = generate_uid(), generate_uid()
    images.loc[len(images)] = [f"{ghost}_image", "", "none 1 0 0 1 1", uid["sB"]]    # label, no image
    images.loc[len(images)] = [f"{corrupt}_image", "", "none 1 0 0 1 1", uid["sB"]]  # corrupt file
    images.to_csv(tmp_path / "train_image_level.csv", index=False)
    write_dcm(tmp_path / "train" / uid["sB"] / uid["seB"] / "stray.dcm")                  # image, no label
    bad = tmp_path / "train" / uid["sB"] / uid["seB"] / f"{corrupt}.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xffgarbage")
    ds, warned = catch(resolve_dataset, f"siim:{tmp_path}")
    assert len(ds) == 4 and len(warned) == 1
    assert "4 images usable" in warned[0] and "skipped 3" in warned[0]
    assert "1 label with no image" in warned[0] and "1 image with no label" in warned[0]
    assert "1 unreadable DICOM" in warned[0]
    names = listed(warned[0])
    assert set(names["reason"]) == {"label with no image", "image with no label", "unreadable DICOM"}
    assert f"{ghost}_image" in set(names["name"])
    assert any(n.endswith("stray.dcm") for n in names["name"]) and any(corrupt in n for n in names["name"])


def test_siim_runs_end_to_end_from_the_cli_with_the_warning_kept(tmp_path, capsys):
    uid = siim_tree(tmp_path / "siim")
    write_dcm(tmp_path / "siim" / "train" / uid["sA"] / uid["seA"] / "stray.dcm")
    model = save_model(TinyNet(), tmp_path / "m.pt", card("tiny", CANONICAL, size=32))
    # The CLI silences library warnings; the adapter's must still come through.
    with pytest.warns(DataWarning, match=r"skipped 1 \(1 image with no label\); names listed in"):
        code, _, err = cli(capsys, "run", "--model", str(model), "--data", f"siim:{tmp_path / 'siim'}",
                             "--out", str(tmp_path / "runs"), "--bootstrap", "20", "--suites", "subtype")
    assert code == 0, err
    result = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert result["dataset"]["counts"]["images"] == 4
    assert "study_accuracy" in result["suites"]["subtype"]["metrics"]  # two images share study A


# --- COVIDx ---------------------------------------------------------------------------------------

def covidx_tree(root: Path) -> None:
    (root / "train.txt").write_text("101 a.png COVID-19 cohen\n102 b 1.png normal rsna\n103 c.jpg pneumonia rsna\n")
    (root / "test.txt").write_text("104 d.png COVID-19 sirm\n101 e.png normal cohen\n")
    write_png(root / "train" / "a.png", (RAMP * 16).astype(np.uint16))       # 16-bit
    write_png(root / "train" / "b 1.png", (RAMP // 16).astype(np.uint8))     # 8-bit, a space in the name
    Image.fromarray((RAMP // 16).astype(np.uint8)).convert("RGB").save(root / "train" / "c.jpg")
    write_png(root / "test" / "d.png", (RAMP // 16).astype(np.uint8))
    write_png(root / "test" / "e.png", (RAMP // 16).astype(np.uint8))


def test_covidx_maps_classes_sources_patients_and_splits(tmp_path):
    covidx_tree(tmp_path)
    ds = resolve_dataset(f"covidx:{tmp_path}")
    t = ds.table.set_index("image_id")
    assert t.loc["train/a", "label"] == "typical" and t.loc["train/c", "label"] == "atypical"
    assert t.loc["train/b 1", "label"] == "negative" and t.loc["test/e", "source_label"] == "normal"
    assert t.loc["train/a", "patient_id"] == "cohen:101" == t.loc["test/e", "patient_id"]
    assert t.loc["train/b 1", "site"] == "rsna" and t.loc["test/d", "split"] == "test"
    assert ds.source.image(list(t.index).index("train/a")).max() == pytest.approx(RAMP.max() * 16 / 65535)


def test_covidx_bad_line_is_an_error_naming_the_line(tmp_path):
    covidx_tree(tmp_path)
    (tmp_path / "test.txt").write_text("104 d.png COVID-19 sirm\n105 f.png\n")
    with pytest.raises(DataError, match=r"test\.txt: line 2: expected 'patient_id filename class"):
        resolve_dataset(f"covidx:{tmp_path}")


def test_covidx_unmatched_files_and_labels_warn_with_a_list(tmp_path):
    covidx_tree(tmp_path)
    (tmp_path / "test" / "d.png").unlink()
    write_png(tmp_path / "train" / "extra.png", (RAMP // 16).astype(np.uint8))
    ds, warned = catch(resolve_dataset, f"covidx:{tmp_path}")
    assert len(ds) == 4 and len(warned) == 1
    assert "1 label with no image" in warned[0] and "1 image with no label" in warned[0]
    assert set(listed(warned[0])["name"]) == {"test/d.png", "train/extra.png"}


# --- COVID-QU-Ex -----------------------------------------------------------------------------------

def covidqu_tree(root: Path) -> Path:
    base = root / "Infection Segmentation Data" / "Infection Segmentation Data"
    lesion = np.zeros((H, W), np.uint8)
    lesion[5:15, 8:20] = 255
    lesion[30:40, 40:60] = 255
    lung = np.zeros((H, W), np.uint8)
    lung[4:44, 4:60] = 255
    for split, cls, name, pixels in (("Train", "COVID-19", "covid_1.png", (RAMP * 16).astype(np.uint16)),
                                     ("Train", "Normal", "normal_1.png", (RAMP // 16).astype(np.uint8)),
                                     ("Test", "Non-COVID", "non_1.png", (RAMP // 16).astype(np.uint8))):
        d = base / split / cls
        write_png(d / "images" / name, pixels)
        write_png(d / "lung masks" / name, lung)
        write_png(d / "infection masks" / name, lesion if cls == "COVID-19" else np.zeros_like(lesion))
    return base


def test_covidqu_lung_masks_and_infection_boxes(tmp_path):
    covidqu_tree(tmp_path)
    ds = resolve_dataset(f"covidqu:{tmp_path / 'Infection Segmentation Data'}")
    t = ds.table.set_index("image_id")
    assert t.loc["train/COVID-19/covid_1", "label"] == "typical"
    assert t.loc["test/Non-COVID/non_1", "label"] == "atypical" and t.loc["train/Normal/normal_1", "split"] == "train"
    assert sorted(json.loads(t.loc["train/COVID-19/covid_1", "boxes"])) == [[8.0, 5.0, 20.0, 15.0], [40.0, 30.0, 60.0, 40.0]]
    assert json.loads(t.loc["train/Normal/normal_1", "boxes"]) == []
    assert "patient_id" not in ds.manifest.explicit  # no patient ids: each image its own patient
    k = list(t.index).index("train/COVID-19/covid_1")
    assert ds.source.lung_mask(k).sum() == 40 * 56


def test_covidqu_orphan_mask_warns_and_unknown_class_is_an_error(tmp_path):
    base = covidqu_tree(tmp_path)
    write_png(base / "Train" / "Normal" / "lung masks" / "orphan.png", np.zeros((H, W), np.uint8))
    ds, warned = catch(resolve_dataset, f"covidqu:{tmp_path}")  # the root: the set is found below it
    assert len(ds) == 3 and "1 lung mask with no image" in warned[0]
    assert any(n.endswith("orphan.png") for n in listed(warned[0])["name"])
    (base / "Train" / "Viral").mkdir()
    with pytest.raises(DataError, match="unexpected class folder 'Viral'"):
        resolve_dataset(f"covidqu:{tmp_path}")


# --- BIMCV-COVID19+ --------------------------------------------------------------------------------

def bimcv_tree(root: Path) -> Path:
    base = root / "covid19_posi"
    (base / "derivatives" / "labels").mkdir(parents=True)
    pd.DataFrame({"participant": ["sub-S1", "sub-S2"], "age": ["[60]", "[71]"], "gender": ["F", "M"]}).to_csv(
        base / "participants.tsv", sep="\t", index=False)
    pd.DataFrame({"ReportID": ["ses-E1", "ses-E2", "ses-E3", "ses-E4"], "PatientID": ["sub-S1", "sub-S1", "sub-S2", "sub-S2"],
                  "Labels": ["['COVID 19', 'ground glass pattern']", "['COVID 19 uncertain']", "['normal']",
                             "['cardiomegaly']"]}).to_csv(
        base / "derivatives" / "labels" / "labels_covid_posi.tsv", sep="\t", index=False)
    for sub, ses, vp in (("S1", "E1", "pa"), ("S1", "E1", "ll"), ("S1", "E2", "ap"), ("S2", "E3", "pa"),
                         ("S2", "E4", "pa")):
        d = base / f"sub-{sub}" / f"ses-{ses}" / "mod-rx"
        png = write_png(d / f"sub-{sub}_ses-{ses}_run-1_bp-chest_vp-{vp}_cr.png", (RAMP * 16).astype(np.uint16))
        png.with_suffix(".json").write_text(json.dumps({"00080070": {"vr": "LO", "Value": ["Konica"]}}))
    return base


def test_bimcv_maps_report_terms_views_and_subjects(tmp_path):
    bimcv_tree(tmp_path)
    ds, warned = catch(resolve_dataset, f"bimcv:{tmp_path}")
    t = ds.table.set_index("study_id")
    assert len(ds) == 3
    assert t.loc["ses-E1", "label"] == "typical" and t.loc["ses-E2", "label"] == "indeterminate"
    assert t.loc["ses-E3", "label"] == "negative" and t.loc["ses-E3", "patient_id"] == "sub-S2"
    assert t.loc["ses-E2", "view"] == "AP" and t.loc["ses-E1", "site"] == "Konica" and t.loc["ses-E1", "sex"] == "F"
    assert "1 lateral view" in warned[0] and "1 no appearance in the report labels" in warned[0]


def test_bimcv_labels_file_without_labels_column_is_an_error(tmp_path):
    base = bimcv_tree(tmp_path)
    f = base / "derivatives" / "labels" / "labels_covid_posi.tsv"
    pd.read_csv(f, sep="\t").drop(columns=["Labels"]).to_csv(f, sep="\t", index=False)
    with pytest.raises(DataError, match="required column 'Labels' is missing"):
        resolve_dataset(f"bimcv:{tmp_path}")


# --- MIDRC-RICORD-1c --------------------------------------------------------------------------------

def test_ricord_reader_majority_and_headers(tmp_path):
    s1, s2, s3 = generate_uid(), generate_uid(), generate_uid()
    labels = [{"id": "L1", "name": "Typical Appearance"}, {"id": "L2", "name": "Atypical Appearance"},
              {"id": "L9", "name": "Mild"}]
    anns = [{"StudyInstanceUID": s1, "labelId": "L1", "createdById": "U1"},
            {"StudyInstanceUID": s1, "labelId": "L1", "createdById": "U2"},
            {"StudyInstanceUID": s1, "labelId": "L2", "createdById": "U3"},
            {"StudyInstanceUID": s1, "labelId": "L9", "createdById": "U3"},
            {"StudyInstanceUID": s2, "labelId": "L1", "createdById": "U1"},
            {"StudyInstanceUID": s2, "labelId": "L2", "createdById": "U2"},
            {"StudyInstanceUID": s3, "labelId": "L2", "createdById": "U1"}]
    (tmp_path / "MIDRC-RICORD-1C-annotations.json").write_text(json.dumps(
        {"labelGroups": [{"labels": labels}], "datasets": [{"annotations": anns}]}))
    write_dcm(tmp_path / "RICORD-1" / "st1" / "se1" / "1-1.dcm", photometric="MONOCHROME1", PatientID="R1",
              StudyInstanceUID=s1, Manufacturer="GE", ViewPosition="AP")
    write_dcm(tmp_path / "RICORD-2" / "st2" / "se1" / "1-1.dcm", PatientID="R2", StudyInstanceUID=s2)
    ds, warned = catch(resolve_dataset, f"ricord:{tmp_path}")
    assert len(ds) == 1
    row = ds.table.iloc[0]
    assert (row["label"], row["patient_id"], row["study_id"], row["site"]) == ("typical", "R1", s1, "GE")
    assert row["label_votes"] == "typical:2, atypical:1"
    assert "1 no majority among readers" in warned[0] and "1 label with no image" in warned[0]


def test_ricord_without_label_file_is_an_error(tmp_path):
    write_dcm(tmp_path / "p" / "s" / "1-1.dcm", PatientID="R1")
    with pytest.raises(DataError, match="no label file"):
        resolve_dataset(f"ricord:{tmp_path}")


def test_adapter_needs_an_existing_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        resolve_dataset(f"siim:{tmp_path / 'nope'}")
