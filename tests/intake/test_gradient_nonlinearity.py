"""The virtual scanners' gradient non-linearity (trialprep/virtual_trial/scanners.py)."""

from __future__ import annotations

import numpy as np
import pytest

from trialprep.virtual_trial.scanners import ScannerEffect, undistort


def _effect(c) -> ScannerEffect:
    return ScannerEffect(gain=1.0, offset=0.0, contrast={}, bias_amplitude=0.0,
                         bias_coeffs=[0.0] * 10, noise_sd=0.0, gradient_nonlinearity=list(c))


def test_undistort_inverts_the_distortion_and_gives_its_volume_change():
    c = np.array([0.04, -0.03, 0.02])
    points = np.random.default_rng(0).uniform(-100, 100, (2000, 3))
    true, volume = undistort(points, _effect(c))
    shown = true + c * true * (true**2).sum(axis=1, keepdims=True) / 90.0**2
    assert np.abs(shown - points).max() < 0.01  # mm
    h = 1e-3  # the voxel's physical volume is the Jacobian determinant of the inverse
    jac = np.stack([(undistort(points + h * e, _effect(c))[0]
                     - undistort(points - h * e, _effect(c))[0]) / (2 * h)
                    for e in np.eye(3)], axis=2)
    np.testing.assert_allclose(volume, np.abs(np.linalg.det(jac)), atol=1e-3)
    assert volume.min() < 0.95 and volume.max() > 1.01  # it does distort


def test_no_coefficients_no_distortion():
    points = np.random.default_rng(1).uniform(-80, 80, (100, 3))
    true, volume = undistort(points, _effect([0.0, 0.0, 0.0]))
    assert (true == points).all() and (volume == 1).all()


def test_a_ball_keeps_its_physical_volume_wherever_it_sits():
    """Voxels of a distorted image of a 40 mm ball, weighted by their physical volume, add
    up to the ball's volume whether it sits at the isocentre or 60 mm off it."""
    c = _effect([0.04, 0.04, -0.04])
    axis = np.arange(-110, 110, 2.0) + 1.0  # 2 mm voxels
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    exact = 4 / 3 * np.pi * 40.0**3
    for centre in ((0, 0, 0), (60, 0, 30)):
        true, volume = undistort(grid, c)
        inside = np.linalg.norm(true - np.asarray(centre), axis=1) < 40
        apparent = 8.0 * inside.sum()  # what a voxel count in the image reads
        assert 8.0 * volume[inside].sum() == pytest.approx(exact, rel=0.01)
        if centre != (0, 0, 0):
            assert abs(apparent - exact) / exact > 0.02  # off-centre it reads wrong

