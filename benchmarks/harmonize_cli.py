"""`trialprep harmonize` as a whole process against a neuroCombat script doing the same
read, fit and write, on the same Parquet table, side by side in one run.

    python -m benchmarks.harmonize_cli [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results import write_section

NEUROCOMBAT_SCRIPT = textwrap.dedent("""
    import sys
    import pandas as pd
    from neuroCombat import neuroCombat

    src, dst = sys.argv[1], sys.argv[2]
    df = pd.read_parquet(src)
    features = [c for c in df.columns if c.startswith("roi")]
    out = neuroCombat(dat=df[features].to_numpy().T, covars=df[["site", "age", "sex"]],
                      batch_col="site", categorical_cols=["sex"], continuous_cols=["age"])
    result = pd.concat([df.drop(columns=features),
                        pd.DataFrame(out["data"].T, columns=features)], axis=1)
    result[df.columns].to_parquet(dst, index=False)
""")


def make_table(path: Path, n: int, p: int, n_batch: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    site = np.repeat([f"site{b}" for b in range(n_batch)], n // n_batch)
    age = rng.uniform(20, 80, n)
    sex = rng.choice(["F", "M"], n)
    X = rng.normal(0, 1, (n, p)) + 0.02 * age[:, None] + 0.3 * (sex == "M")[:, None]
    for b in range(n_batch):
        rows = site == f"site{b}"
        X[rows] = X[rows] * rng.uniform(0.7, 1.5, p) + rng.normal(0, 1, p)
    ids = pd.DataFrame({"participant_id": [f"sub-{i:05d}" for i in range(n)], "site": site,
                        "age": age, "sex": sex})
    features = pd.DataFrame(X, columns=[f"roi{j:04d}" for j in range(p)])
    pd.concat([ids, features], axis=1).to_parquet(path, index=False)


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small table (smoke run)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n, p = (500, 200) if args.quick else (5000, 2000)
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = tmp / "table.parquet"
        make_table(table, n, p)
        script = tmp / "neurocombat_script.py"
        script.write_text(NEUROCOMBAT_SCRIPT)
        ours_cmd = [str(bindir / "trialprep"), "harmonize", str(table), "--batch", "site",
                    "--covariates", "age,sex", "--categorical", "sex",
                    "--features", ",".join(f"roi{j:04d}" for j in range(p)),
                    "--out", str(tmp / "ours.parquet")]
        ref_cmd = [sys.executable, str(script), str(table), str(tmp / "ref.parquet")]
        ours, ref = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine state
            ours.append(timed(ours_cmd))
            ref.append(timed(ref_cmd))
        a = pd.read_parquet(tmp / "ours.parquet")
        b = pd.read_parquet(tmp / "ref.parquet")
        feats = [c for c in a.columns if c.startswith("roi")]
        diff = float(np.abs(a[feats].to_numpy() - b[feats].to_numpy()).max())
    t_ours, t_ref = statistics.median(ours), statistics.median(ref)
    row = (f"| {n} rows x {p} features, 10 batches | {t_ours:.2f} s | {t_ref:.2f} s | "
           f"**{t_ref / t_ours:.1f}x** | {diff:.1e} |")
    print(row)
    if not args.quick:
        write_section("Harmonization command line (whole process)", (
            "Whole processes, median of "
            f"{args.repeats} alternating runs: `trialprep harmonize TABLE.parquet --batch site "
            "--covariates age,sex --categorical sex --out OUT.parquet` (read, fit, apply, "
            "save the model, write) against a Python script that reads the same Parquet "
            "with pandas, runs neuroCombat 0.2.12 (same covariates) and writes the result "
            "with pandas. Ratio = script / trialprep. Max |difference| of the outputs in the "
            "last column (same method, both parametric EB). Goal (issue 20): >= 1.5x.\n\n"
            "| table | trialprep harmonize | neuroCombat script | ratio | max diff |\n"
            "|---|---|---|---|---|\n" + row))


if __name__ == "__main__":
    main()
