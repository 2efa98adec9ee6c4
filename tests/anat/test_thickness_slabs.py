"""DiReCT run in left-right slabs, one process each, gives the whole-image thickness."""

from __future__ import annotations

import numpy as np

from trialprep.workflows.anat.thickness import _direct_in_slabs, slab_bounds


def test_slabs_split_the_brain_evenly_and_keep_context():
    counts = np.array([0, 0, 5, 5, 5, 5, 5, 5, 0])
    slabs = slab_bounds(counts, 2, overlap=2)
    assert [(a, b) for a, b, _, _ in slabs] == [(0, 5), (5, 9)]
    assert [(lo, hi) for _, _, lo, hi in slabs] == [(0, 7), (3, 9)]
    three = slab_bounds(np.ones(30), 3, overlap=0)
    assert [(a, b) for a, b, _, _ in three] == [(0, 10), (10, 20), (20, 30)]


def _cortex(shape=(72, 40, 40)):
    """A WM slab-cylinder along x wrapped in 3 mm of GM, in CSF (1 mm voxels)."""
    import ants

    z, y = np.indices(shape[1:]) - np.array(shape[1:])[:, None, None] / 2 + 0.5
    r = np.hypot(z, y)[None].repeat(shape[0], axis=0)
    r = r * (1 + 0.15 * np.sin(np.arange(shape[0]) / 6.0))[:, None, None]  # varies along x
    x = np.arange(shape[0])[:, None, None]
    inside = (x > 4) & (x < shape[0] - 5)
    wm = ((r < 9) & inside).astype("float32")
    gm = ((r >= 9) & (r < 12) & inside).astype("float32")
    seg = np.where(wm > 0, 3, np.where(gm > 0, 2, np.where(inside & (r < 15), 1, 0)))
    img = [ants.from_numpy(a.astype("float32"), spacing=(1.0, 1.0, 1.0))
           for a in (seg, gm, wm)]
    img[0] = img[0].clone("unsigned int")
    return img


def test_slab_thickness_equals_whole_image_thickness(tmp_path):
    import ants

    crop = _cortex()
    params = {"its": 8, "r": 0.025, "m": 1.5}
    whole = ants.kelly_kapowski(s=crop[0], g=crop[1], w=crop[2], verbose=0, **params).numpy()
    slabs = _direct_in_slabs(crop, params, 2, 12.0, 42, str(tmp_path)).numpy()
    gm = crop[0].numpy() == 2
    assert whole[gm].mean() > 0.5  # DiReCT measured something
    assert np.abs(slabs[gm] - whole[gm]).max() < 0.02 * whole[gm].max()
