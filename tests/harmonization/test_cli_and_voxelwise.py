"""`trialprep harmonize` on tables and ComBat on a stack of NIfTI maps."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd

from tests.conftest import simulate_sites
from trialprep.cli import main
from trialprep.harmonization import ComBatModel, apply, harmonize
from trialprep.harmonization.voxelwise import harmonize_images, load_masked


def _table(tmp_path, suffix=".tsv"):
    X, batch, cov, _ = simulate_sites(seed=41)
    df = pd.concat([pd.Series(X.index, index=X.index, name="participant_id"), batch, cov, X],
                   axis=1).reset_index(drop=True)
    path = tmp_path / f"table{suffix}"
    if suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    return df, path


def test_cli_fit_then_apply(tmp_path, capsys):
    df, path = _table(tmp_path)
    out = tmp_path / "h.parquet"
    rc = main(["harmonize", str(path), "--batch", "site", "--covariates", "age,dx",
               "--categorical", "dx", "--smooth", "age", "--out", str(out),
               "--diagnostics", str(tmp_path / "d.json")])
    assert rc == 0
    res = pd.read_parquet(out)
    feats = [c for c in df.columns if c.startswith("roi")]
    expected, _ = harmonize(df[feats], df["site"], df[["age", "dx"]], categorical=["dx"],
                            smooth=["age"])
    np.testing.assert_allclose(res[feats].to_numpy(), expected, rtol=1e-9, atol=1e-9)
    assert list(res["participant_id"]) == list(df["participant_id"])  # ids carried through
    diag = json.loads((tmp_path / "d.json").read_text())
    assert diag["site_auc_before"] > diag["site_auc_after"]
    model = ComBatModel.load(tmp_path / "h.combat.npz")
    assert model.features == feats and model.covariates == ["age", "dx"]

    # --apply: new rows of known sites, with their own covariates
    new = df.iloc[::4].copy()
    new_path = tmp_path / "new.csv"
    new.to_csv(new_path, index=False)
    rc = main(["harmonize", str(new_path), "--batch", "site", "--apply",
               str(tmp_path / "h.combat.npz"), "--out", str(tmp_path / "new_h.tsv")])
    assert rc == 0
    applied = pd.read_csv(tmp_path / "new_h.tsv", sep="\t")
    np.testing.assert_allclose(applied[feats].to_numpy(),
                               apply(model, new[feats], new["site"], new[["age", "dx"]]),
                               rtol=1e-10)


def test_cli_reports_plain_error(tmp_path, capsys):
    _, path = _table(tmp_path, ".csv")
    rc = main(["harmonize", str(path), "--batch", "nosuch", "--out", str(tmp_path / "o.tsv")])
    assert rc == 2
    assert "batch column 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "o.tsv").exists()


def test_voxelwise_harmonization(tmp_path):
    rng = np.random.default_rng(42)
    shape, affine = (6, 7, 5), np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[1:5, 1:6, 1:4] = 1
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    batch = np.repeat(["a", "b", "c"], 8)
    paths = []
    for i, b in enumerate(batch):
        vol = rng.normal(100, 5, shape) * {"a": 1.0, "b": 1.3, "c": 0.8}[b] + {"a": 0, "b": 20,
                                                                             "c": -10}[b]
        p = tmp_path / f"sub-{i:02d}_map.nii.gz"
        nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), p)
        paths.append(p)
    outs, model = harmonize_images(paths, tmp_path / "mask.nii.gz", batch, tmp_path / "out")
    assert len(outs) == len(paths) and all(o.name.endswith("_desc-combat.nii.gz") for o in outs)
    Y, _ = load_masked(paths, tmp_path / "mask.nii.gz")
    H, _ = load_masked(outs, tmp_path / "mask.nii.gz")
    expected, _ = harmonize(Y, batch)
    np.testing.assert_allclose(H, expected, rtol=1e-5)  # stored as float32
    out0 = np.asarray(nib.load(outs[0]).dataobj)
    assert np.all(out0[mask == 0] == 0)
    site_means = [H[batch == b].mean() for b in "abc"]
    assert np.ptp(site_means) < 0.1 * np.ptp([Y[batch == b].mean() for b in "abc"])
