"""The leakage audit: the same patient or the same picture on both sides of a split (or of two
datasets), whatever the file names say.

Findings:
- patient overlap: a patient id with images in more than one split; with `--against`, a patient id
  present in both datasets;
- exact duplicates: equal pixel content (SHA-256 of the canonical image, so a DICOM and a PNG of the
  same pixels match);
- near-duplicates: the same picture re-encoded, resized, re-windowed or cropped a little
  (`benchmark.audit.phash`: pHash Hamming distance, then an aligned detail correlation).

A duplicate pair is a leak when its two images are in different datasets, in different splits, or
under different patient ids (the same picture counted as two patients). Two images of one patient in
one split are expected to look alike (follow-up films, repeats): they are listed as `same patient`,
not as leaks. Any leak makes the exit code 1.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmark.audit.features import Features, dataset_features
from benchmark.audit.phash import COARSE_MIN, DETAIL_MIN, PHASH_MAX, coarse_descriptors, detail_similarity, hamming

MAX_LISTED = 5000  # pairs written out per report; counts always cover all of them
_CHUNK = 256  # rows of A per block: the [block, len(B)] uint64 XOR stays small

ACROSS_DATASETS = "across datasets"
ACROSS_SPLITS = "across splits"
OTHER_PATIENT = "different patient ids"
SAME_PATIENT = "same patient"


@dataclass(frozen=True)
class AuditSettings:
    phash_max: int = PHASH_MAX
    coarse_min: float = COARSE_MIN
    detail_min: float = DETAIL_MIN


@dataclass
class Pair:
    kind: str            # exact | near
    relation: str        # one of the four above
    leak: bool
    dataset_a: str
    image_a: str
    dataset_b: str
    image_b: str
    patient_a: str
    patient_b: str
    split_a: str | None
    split_b: str | None
    phash_distance: int
    similarity: float | None  # aligned detail correlation (near pairs)


@dataclass
class AuditReport:
    datasets: list[dict]
    settings: AuditSettings
    patient_overlap: list[dict] = field(default_factory=list)    # patients in several splits
    shared_patients: list[dict] = field(default_factory=list)    # patient ids in both datasets
    pairs: list[Pair] = field(default_factory=list)
    pair_counts: dict[str, int] = field(default_factory=dict)   # "<kind>/<relation>" -> count, all pairs
    paths: tuple[Path, ...] = ()                                 # where write_audit put it

    @property
    def leaks(self) -> int:
        leaking = sum(n for key, n in self.pair_counts.items() if not key.endswith(SAME_PATIENT))
        return len(self.patient_overlap) + len(self.shared_patients) + leaking

    @property
    def exit_code(self) -> int:
        return 1 if self.leaks else 0

    def summary(self) -> list[tuple[str, int, bool]]:
        """(finding, count, is a leak) rows, every finding listed even when zero."""
        rows = [("patients in more than one split", len(self.patient_overlap), True)]
        if len(self.datasets) > 1:
            rows.append(("patient ids in both datasets", len(self.shared_patients), True))
        relations = [ACROSS_DATASETS] if len(self.datasets) > 1 else []
        relations += [ACROSS_SPLITS, OTHER_PATIENT, SAME_PATIENT]
        for kind in ("exact", "near"):
            for rel in relations:
                rows.append((f"{kind} duplicates, {rel}", self.pair_counts.get(f"{kind}/{rel}", 0),
                             rel != SAME_PATIENT))
        return rows

    def to_json(self) -> dict:
        return {
            "schema": "cxrbench.audit/1", "leaks": self.leaks, "exit_code": self.exit_code,
            "datasets": self.datasets, "settings": asdict(self.settings),
            "summary": [{"finding": f, "count": n, "leak": leak} for f, n, leak in self.summary()],
            "patient_overlap": self.patient_overlap, "shared_patients": self.shared_patients,
            "pair_counts": self.pair_counts, "pairs_listed": len(self.pairs),
            "pairs": [asdict(p) for p in self.pairs],
        }

    def text(self, max_pairs: int = 30) -> str:
        """A readable report: the summary table, then the first leaks and same-patient pairs."""
        verdict = f"{'LEAKS FOUND' if self.leaks else 'no leaks'} ({self.leaks})"
        lines = [f"leakage audit of {' vs '.join(d['name'] for d in self.datasets)}: {verdict}", ""]
        width = max(len(f) for f, _, _ in self.summary())
        lines += [f"{'finding':<{width}}  {'count':>7}  leak"]
        lines += [f"{f:<{width}}  {n:>7}  {'yes' if leak and n else '-'}" for f, n, leak in self.summary()]
        for title, items in (("patients in more than one split", self.patient_overlap),
                             ("patient ids in both datasets", self.shared_patients)):
            if items:
                lines += ["", f"{title} (first {min(len(items), max_pairs)}):"]
                lines += [f"  {json.dumps(item)}" for item in items[:max_pairs]]
        ordered = sorted(self.pairs, key=lambda p: (not p.leak, p.kind != "exact"))
        if ordered:
            lines += ["", f"pairs (first {min(len(ordered), max_pairs)} of {sum(self.pair_counts.values())}):"]
            for p in ordered[:max_pairs]:
                sim = "" if p.similarity is None else f" sim={p.similarity:.3f}"
                lines.append(f"  {'LEAK ' if p.leak else '     '}{p.kind:<5} {p.relation:<22} "
                             f"{p.dataset_a}:{p.image_a} [{p.split_a or '-'}, {p.patient_a}]  ~  "
                             f"{p.dataset_b}:{p.image_b} [{p.split_b or '-'}, {p.patient_b}]  "
                             f"phash_d={p.phash_distance}{sim}")
        return "\n".join(lines) + "\n"


def audit_datasets(datasets: list, *, cache_root: Path, workers: int = 0, progress: bool = False,
                   settings: AuditSettings | None = None) -> AuditReport:
    """Audit one dataset, or the first against the second (and each within itself)."""
    settings = settings or AuditSettings()
    feats = [dataset_features(d, cache_root=cache_root, workers=workers, progress=progress) for d in datasets]
    if len(feats) == 2 and feats[0].name == feats[1].name:
        feats[1].name += " (against)"  # two folders of the same name stay tellable apart in the report
    report = AuditReport(datasets=[f.info() for f in feats], settings=settings)
    for f in feats:
        report.patient_overlap += _split_overlap(f)
    if len(feats) == 2:
        report.shared_patients = _shared_patients(*feats)
    pairs: list[Pair] = []
    for f in feats:
        pairs += _exact_pairs(f, None) + _near_pairs(f, None, settings)
    if len(feats) == 2:
        pairs += _exact_pairs(feats[0], feats[1]) + _near_pairs(feats[0], feats[1], settings)
    for p in pairs:
        key = f"{p.kind}/{p.relation}"
        report.pair_counts[key] = report.pair_counts.get(key, 0) + 1
    report.pairs = sorted(pairs, key=lambda p: (not p.leak, p.kind != "exact"))[:MAX_LISTED]
    return report


def _split_overlap(f: Features) -> list[dict]:
    if not f.has_patients:
        return []
    out = []
    by_patient: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for pid, split in zip(f.patients, f.splits):
        counts[pid] = counts.get(pid, 0) + 1
        if split is not None:
            by_patient.setdefault(pid, set()).add(split)
    for pid, splits in sorted(by_patient.items()):
        if len(splits) > 1:
            out.append({"dataset": f.name, "patient_id": pid, "splits": sorted(splits), "images": counts[pid]})
    return out


def _shared_patients(a: Features, b: Features) -> list[dict]:
    if not (a.has_patients and b.has_patients):
        return []
    common = sorted(set(a.patients) & set(b.patients))
    return [{"patient_id": pid, "datasets": [a.name, b.name]} for pid in common]


def _relation(a: Features, i: int, b: Features, j: int, cross: bool) -> str:
    if cross:
        return ACROSS_DATASETS
    sa, sb = a.splits[i], b.splits[j]
    if sa is not None and sb is not None and sa != sb:
        return ACROSS_SPLITS
    if a.has_patients and a.patients[i] == b.patients[j]:
        return SAME_PATIENT
    return OTHER_PATIENT


def _pair(kind: str, a: Features, i: int, b: Features, j: int, cross: bool, sim: float | None) -> Pair:
    rel = _relation(a, i, b, j, cross)
    dist = int(hamming(a.phash[i:i + 1], b.phash[j:j + 1])[0, 0])
    return Pair(kind, rel, rel != SAME_PATIENT, a.name, a.ids[i], b.name, b.ids[j], a.patients[i],
                b.patients[j], a.splits[i], b.splits[j], dist, None if sim is None else round(float(sim), 4))


def _exact_pairs(a: Features, b: Features | None) -> list[Pair]:
    cross = b is not None
    b = b if cross else a
    groups: dict[str, list[int]] = {}
    for j, d in enumerate(b.digests):
        groups.setdefault(d, []).append(j)
    out = []
    for i, d in enumerate(a.digests):
        for j in groups.get(d, []):
            if cross or j > i:
                out.append(_pair("exact", a, i, b, j, cross, None))
    return out


def _near_pairs(a: Features, b: Features | None, settings: AuditSettings) -> list[Pair]:
    """Stage 1 over all pairs in chunks (pHash distance and coarse cosine), stage 2 on survivors."""
    cross = b is not None
    b = b if cross else a
    ca = coarse_descriptors(a.thumbs)
    cb = coarse_descriptors(b.thumbs) if cross else ca
    out = []
    for start in range(0, len(a.ids), _CHUNK):
        stop = min(start + _CHUNK, len(a.ids))
        close = (hamming(a.phash[start:stop], b.phash) <= settings.phash_max) & (ca[start:stop] @ cb.T >= settings.coarse_min)
        for di, j in np.argwhere(close):
            i, j = start + int(di), int(j)
            if (not cross and j <= i) or a.digests[i] == b.digests[j]:
                continue  # each pair once; equal pixels are already an exact pair
            sim = detail_similarity(a.thumbs[i], b.thumbs[j])
            if sim >= settings.detail_min:
                out.append(_pair("near", a, i, b, j, cross, sim))
    return out


def write_audit(report: AuditReport, out_dir: Path) -> tuple[Path, Path]:
    """audit.json and audit.txt in out_dir (written atomically)."""
    from benchmark.core.files import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "audit.json", out_dir / "audit.txt")
    for path, text in zip(paths, (json.dumps(report.to_json(), indent=2) + "\n", report.text())):
        atomic_write_text(path, text)
    return paths
