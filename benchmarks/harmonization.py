"""ComBat: trialprep against neuroCombat 0.2.12, side by side, same data, one run.

Each case runs in a fresh process so peak memory (ru_maxrss) is its own.
    python -m benchmarks.harmonization [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np
import pandas as pd

from benchmarks.results import write_section


def make_data(p: int, n: int, n_batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(n_batch), n // n_batch).astype(str)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, p)) + 0.02 * age[:, None] + 0.3 * sex[:, None]
    for b in range(n_batch):
        rows = batch == str(b)
        X[rows] = X[rows] * rng.uniform(0.7, 1.5, p) + rng.normal(0, 1, p)
    cov = pd.DataFrame({"batch": batch, "age": age, "sex": sex})
    return X, cov


def _run(tool: str, X, cov, parametric: bool) -> np.ndarray:
    if tool == "trialprep":
        from trialprep.harmonization import harmonize

        return harmonize(X, cov["batch"], cov[["age", "sex"]], categorical=["sex"],
                         parametric=parametric)[0]
    from neuroCombat import neuroCombat

    return neuroCombat(dat=X.T, covars=cov, batch_col="batch", categorical_cols=["sex"],
                       continuous_cols=["age"], parametric=parametric)["data"].T


def _case(tool: str, p: int, n: int, n_batch: int, parametric: bool, repeats: int,
          q: mp.Queue):
    # Warm-up on tiny data: imports and one-time library initialisation are not the algorithm.
    _run(tool, *make_data(20, 60, 3, seed=1), parametric)
    X, cov = make_data(p, n, n_batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = _run(tool, X, cov, parametric)
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put({"seconds": float(np.median(times)), "peak_mb": peak_mb,
           "nan": bool(np.isnan(out).any()), "checksum": float(np.nansum(out[:50, :50]))})


def run_case(tool, p, n, n_batch, parametric, repeats=1, timeout=1800):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_case, args=(tool, p, n, n_batch, parametric, repeats, q))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        return {"seconds": float("nan"), "peak_mb": float("nan"), "nan": None, "timeout": True}
    return q.get()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    if args.quick:
        cases = [(200, 500, 10, True), (200, 500, 10, False)]
    else:
        cases = [(2000, 5000, 10, True), (2000, 5000, 10, False), (100_000, 1000, 10, True)]
    rows = []
    for p, n, nb, par in cases:
        repeats = 3 if par else 1  # neuroCombat's non-parametric case takes minutes
        ours = run_case("trialprep", p, n, nb, par, repeats)
        ref = run_case("neuroCombat", p, n, nb, par, repeats)
        mode = "parametric" if par else "non-parametric"
        ratio = ref["seconds"] / ours["seconds"]
        rows.append(
            f"| {p} x {n}, {nb} batches | {mode} | {ours['seconds']:.2f} s, "
            f"{ours['peak_mb']:.0f} MB | {ref['seconds']:.2f} s, {ref['peak_mb']:.0f} MB"
            f"{' (output has NaN)' if ref['nan'] else ''} | **{ratio:.0f}x** |")
        print(rows[-1], flush=True)
    body = (
        "Features x samples, 2 covariates (age continuous, sex categorical); wall time of the "
        "algorithm (median of 3 calls for parametric, 1 for non-parametric, after one warm-up "
        "call on tiny data that loads each tool's imports) and the peak resident memory of the "
        "whole process, each case and tool in its own process. Ratio = neuroCombat time / "
        "trialprep time. Goals (issue 4): >= 20x parametric and >= 100x non-parametric at "
        "2000 x 5000; 100 000 x 1000 parametric in <= 5 s.\n\n"
        "| data | mode | trialprep | neuroCombat 0.2.12 | speed-up |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
    )
    if not args.quick:
        write_section("Harmonization (ComBat)", body)


if __name__ == "__main__":
    main()
