"""The leakage audit's known-answer check at full size, in one run.

1. 2,000 synth images of 2,000 different patients (so no two are the same picture), written as 16-bit
   PNGs, plus 200 injected duplicates (50 each: re-encoded as 8-bit JPEG q70-92; resized x0.6-0.9 or
   x1.2-1.5; contrast-shifted, gamma 0.7-1.4 with gain and offset; cropped 1-4 px per edge, 1.5% of
   256) under new image and patient ids in another split: recall of the injected pairs (target >=
   95%) and false pairs (target 0).
2. The same 2,000 images without duplicates: pairs reported (target 0).
3. A synth draw as generated (1-3 images per patient, same anatomy, small pose changes): leaks
   (target 0) and how many same-patient pairs are listed as expected.
4. Stress, beyond the target: crops of up to 3% per edge.

    python perf/leakage_audit.py [--n 2000] [--per-kind 50] [--size 256] [--workers 0]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_audit import KINDS, build_injected, found_pairs  # the tests' scenario, full size


def audit(manifest: Path, tmp: Path, workers: int, tag: str):
    from benchmark import api

    t0 = time.perf_counter()
    report = api.audit(str(manifest), out=tmp / f"audit-{tag}", cache_dir=tmp / f"cache-{tag}", workers=workers)
    return report, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--per-kind", type=int, default=50)
    ap.add_argument("--size", type=int, default=256, help="synth image side")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxrbench-audit-"))
    try:
        print(f"{'check':<58}{'result':>28}{'audit s':>9}")
        t0 = time.perf_counter()
        manifest, truth = build_injected(tmp / "injected", n_distinct=args.n, image_size=args.size,
                                         per_kind=args.per_kind)
        built = time.perf_counter() - t0
        report, secs = audit(manifest, tmp, args.workers, "injected")
        found = found_pairs(report)
        per_kind = {k: sum(1 for s, d in truth if d.startswith(f"dup-{k}-") and (s, d) in found) for k in KINDS}
        recall = len(found & truth) / len(truth)
        print(f"{f'{args.n} distinct + {len(truth)} injected: recall':<58}{f'{len(found & truth)}/{len(truth)} = {recall:.1%}':>28}{secs:>9.1f}")
        print(f"{'   by kind':<58}{', '.join(f'{k} {v}/{args.per_kind}' for k, v in per_kind.items()):>28}")
        print(f"{'   false pairs (any pair not injected)':<58}{len(found - truth):>28}")
        print(f"{'   exit code':<58}{report.exit_code:>28}")

        clean, _ = build_injected(tmp / "clean", n_distinct=args.n, image_size=args.size, per_kind=0, inject=False)
        report, secs = audit(clean, tmp, args.workers, "clean")
        print(f"{f'{args.n} distinct, nothing injected: pairs reported':<58}{len(report.pairs):>28}{secs:>9.1f}")
        print(f"{'   exit code':<58}{report.exit_code:>28}")

        spec = f"synth:n_patients={int(args.n / 1.75)},image_size={args.size},seed=5"
        from benchmark import api

        t0 = time.perf_counter()
        report = api.audit(spec, out=tmp / "audit-synth", cache_dir=tmp / "cache-synth", workers=args.workers)
        secs = time.perf_counter() - t0
        same = report.pair_counts.get("near/same patient", 0) + report.pair_counts.get("exact/same patient", 0)
        n_img = report.datasets[0]["images"]
        print(f"{f'synth as generated ({n_img} images, 1-3 per patient): leaks':<58}{report.leaks:>28}{secs:>9.1f}")
        print(f"{'   same-patient pairs listed as expected':<58}{same:>28}")

        stress, truth = build_injected(tmp / "stress", n_distinct=min(args.n, 500), image_size=args.size,
                                       per_kind=args.per_kind, crop_frac=0.03, seed=1)
        report, secs = audit(stress, tmp, args.workers, "stress")
        found = found_pairs(report)
        crops = {p for p in truth if p[1].startswith("dup-crop-")}
        print(f"{'stress: crops up to 3% per edge, recall of crops':<58}{f'{len(found & crops)}/{len(crops)}':>28}{secs:>9.1f}")
        print(f"{'   false pairs':<58}{len(found - truth):>28}")
        print(f"(images written in {built:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
