"""Cortical thickness along the field lines of Laplace's equation (Jones et al. 2000), with
the two path lengths from Yezzi & Prince's PDEs (2003) and partial-volume boundaries
(Acosta et al. 2009): accurate at the voxel sizes MRI gives, in seconds.

The grey matter between the white matter (potential 0) and the CSF or background (1) gets
the potential ``u`` solving Laplace's equation; its normalized gradient ``T`` is the
direction of the cortex's "columns". Along those field lines ``L0`` (from the white matter)
and ``L1`` (from the outside) solve ``T . grad L0 = g`` and ``-T . grad L1 = g``, where ``g``
is each voxel's grey-matter fraction (its partial volume): a field line collects the grey
matter it crosses, so the thickness ``L0 + L1`` does not round to whole voxels, and a
cortex thinner than a voxel still measures its own thickness. Boundary voxels that hold
grey matter (a white-matter voxel with some cortex in it, a sulcal CSF voxel with some)
start their field lines with the grey matter they hold. Everything is numpy/scipy:
a conjugate-gradient Laplace solve and upwind sweeps; deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from scipy import ndimage, sparse
from scipy.sparse import linalg as splinalg

_OFFSETS = [(d, s) for d in range(3) for s in (-1, 1)]


@dataclass(frozen=True)
class ThicknessSettings:
    """inner: white-matter fraction at which a voxel is white matter (potential 0);
    outer: CSF-or-background fraction at which it is outside (potential 1); sulcus_angle:
    how far apart (degrees) the directions to the nearest white matter of two neighbouring
    voxels must be for them to lie between two banks of a buried sulcus (``buried_sulci``:
    whether to look for them at all); sweeps: the most
    upwind sweeps of the path-length PDEs (they stop when converged)."""

    inner: float = 0.5
    outer: float = 0.5
    sulcus_angle: float = 150.0
    buried_sulci: bool = True
    tolerance: float = 1e-6
    sweeps: int = 400


@dataclass
class Ribbon:
    """The fields of one thickness computation, on the input's grid: ``L0`` the grey matter
    collected from the white matter up to and including each voxel, ``own`` each voxel's
    own grey matter over its step along the field line, ``thickness`` the whole line's."""

    potential: np.ndarray
    L0: np.ndarray
    own: np.ndarray
    thickness: np.ndarray


def laplace_thickness(gm: np.ndarray, wm: np.ndarray, voxel_mm, csf: np.ndarray | None = None,
                      settings: ThicknessSettings = ThicknessSettings()) -> np.ndarray:
    """Thickness (mm) at every voxel with grey matter on a field line from white matter to
    the outside; 0 elsewhere. ``gm``, ``wm`` (and ``csf``): tissue fractions or posteriors;
    what is neither grey nor white matter counts as outside."""
    return cortical_ribbon(gm, wm, voxel_mm, csf, settings).thickness


def cortical_ribbon(gm: np.ndarray, wm: np.ndarray, voxel_mm, csf: np.ndarray | None = None,
                    settings: ThicknessSettings = ThicknessSettings()) -> Ribbon:
    """The potential, path lengths and thickness (see :class:`Ribbon`)."""
    gm = np.clip(np.asarray(gm, np.float64), 0, 1)
    wm = np.clip(np.asarray(wm, np.float64), 0, 1)
    zeros = np.zeros(gm.shape, np.float32)
    box = _bounding_box(gm > 0.01, margin=2)
    if box is None:
        return Ribbon(zeros, zeros, zeros, zeros)
    # the crop, padded with one voxel of outside all round (the potential's outer frame)
    g = np.pad(gm[box], 1)
    w = np.pad(wm[box], 1)
    c = None if csf is None else np.pad(np.clip(np.asarray(csf, np.float64)[box], 0, 1), 1)
    outside = np.clip(1.0 - g - w, 0, 1) if c is None else np.maximum(c, 1.0 - g - w)
    h = np.asarray(voxel_mm, np.float64)[:3]
    inner = w >= settings.inner
    outer = (outside >= settings.outer) & ~inner
    frame = _frame(g.shape)
    outer |= frame
    inner &= ~frame
    # where two banks of cortex touch (a sulcus narrower than a voxel), their meeting plane
    # is outside: the medial surface between opposite white-matter walls
    buried = (_buried_sulci(inner, ~inner & ~outer, h, settings.sulcus_angle)
              if settings.buried_sulci else np.zeros(g.shape, bool))
    outer |= buried
    domain = ~inner & ~outer
    u = _laplace(domain, outer, h, settings.tolerance)
    T = _unit_gradient(u, h)
    step = 1.0 / np.maximum((np.abs(T) / h[:, None, None, None]).sum(axis=0), 1e-12)
    defined = np.abs(T).sum(axis=0) > 0
    source = np.where(defined, g, 0.0)
    start_outer = np.where(buried, 0.5, 1.0) * source  # a meeting voxel is half each bank's
    L0 = _path_length(source, step, T, h, domain, inner, source, -1, u, settings)
    L1 = _path_length(source, step, T, h, domain, outer, start_outer, 1, u, settings)
    thick = L0 + L1 - source * step
    thick = np.where(defined & domain & np.isfinite(thick), np.maximum(thick, 0), 0.0)
    # boundary voxels holding grey matter (the meeting plane of a buried sulcus, partial
    # white-matter or CSF voxels): the thickness of the field lines through their neighbours
    thick = _fill_from_neighbours(thick, (g > 0) & ~domain & ~frame, domain)

    def uncrop(a: np.ndarray) -> np.ndarray:
        full = np.zeros(gm.shape, np.float32)
        full[box] = a[1:-1, 1:-1, 1:-1]
        return full

    return Ribbon(uncrop(u), uncrop(np.where(domain, L0, 0.0)),
                  uncrop(np.where(domain, source * step, 0.0)), uncrop(thick))


class _LTInputSpec(BaseInterfaceInputSpec):
    probseg = InputMultiObject(File(exists=True), mandatory=True, desc="CSF, GM, WM posteriors")
    in_file = File(exists=True, desc="bias-corrected T1w: partial volumes from its intensity "
                                     "at tissue boundaries (else the posteriors as they are)")
    mask_file = File(exists=True, desc="brain (intracranial) mask")
    inner = traits.Float(0.5, usedefault=True, desc="WM fraction of a white-matter voxel")
    outer = traits.Float(0.5, usedefault=True, desc="CSF/background fraction of an outside voxel")
    sulcus_angle = traits.Float(150.0, usedefault=True,
                                desc="degrees between opposite white-matter walls of a "
                                     "buried sulcus")


class _LTOutputSpec(TraitedSpec):
    thickness = File(exists=True, desc="cortical thickness map (mm), 0 outside the cortex")


class LaplacianThickness(SimpleInterface):
    """Laplacian (Yezzi-Prince) cortical thickness on partial-volume tissue maps."""

    input_spec = _LTInputSpec
    output_spec = _LTOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        from nipype.interfaces.base import isdefined

        from trialprep.workflows.anat.partial_volume import partial_volumes

        imgs = [nib.load(p) for p in self.inputs.probseg]
        probs = np.stack([np.asarray(i.dataobj, np.float64) for i in imgs])
        if isdefined(self.inputs.in_file):
            mask = (np.asarray(nib.load(self.inputs.mask_file).dataobj) > 0
                    if isdefined(self.inputs.mask_file) else None)
            probs = partial_volumes(np.asarray(nib.load(self.inputs.in_file).dataobj,
                                               np.float64), probs, mask)
        settings = ThicknessSettings(inner=self.inputs.inner, outer=self.inputs.outer,
                                     sulcus_angle=self.inputs.sulcus_angle)
        gm_img = imgs[1]
        zooms = gm_img.header.get_zooms()[:3]
        thick = laplace_thickness(probs[1], probs[2], zooms, probs[0], settings)
        out = os.path.join(runtime.cwd, "thickness.nii.gz")
        nib.save(nib.Nifti1Image(thick, gm_img.affine, gm_img.header), out)
        self._results["thickness"] = out
        return runtime


def _fill_from_neighbours(thick: np.ndarray, where: np.ndarray, domain: np.ndarray,
                          rounds: int = 2) -> np.ndarray:
    """``where`` voxels get the mean thickness of their face neighbours that have one."""
    thick = thick.copy()
    for _ in range(rounds):
        total = np.zeros_like(thick)
        count = np.zeros_like(thick)
        have = thick > 0
        for axis, s in _OFFSETS:
            total += _shift(np.where(have, thick, 0.0), axis, s, 0.0)
            count += _shift(have, axis, s, False)
        todo = where & ~have & (count > 0)
        if not todo.any():
            break
        thick[todo] = total[todo] / count[todo]
    return thick


def _buried_sulci(inner: np.ndarray, domain: np.ndarray, h: np.ndarray,
                  angle_deg: float) -> np.ndarray:
    """Domain voxels on the medial surface between opposite white-matter walls: a voxel
    whose nearest white-matter point lies in a direction at least ``angle_deg`` away from
    its neighbour's (180 across a sulcus between parallel walls; 90 at a concave corner,
    120 for a fundus: not marked)."""
    if not inner.any() or not domain.any():
        return np.zeros(inner.shape, bool)
    _, nearest = ndimage.distance_transform_edt(~inner, sampling=h, return_indices=True)
    grid = np.indices(inner.shape)
    to_wm = (nearest - grid) * h[:, None, None, None]              # (3, ...) mm
    length = np.sqrt((to_wm**2).sum(axis=0))
    cos_limit = np.cos(np.radians(angle_deg))
    medial = np.zeros(inner.shape, bool)
    for axis in range(3):
        other = np.stack([_shift(to_wm[k], axis, 1, 0.0) for k in range(3)])
        other_len = _shift(length, axis, 1, 0.0)
        dot = (to_wm * other).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = dot / (length * other_len)
        split = (cos < cos_limit) & (length > 0) & (other_len > 0)
        here = split & (length >= other_len)                  # the one farther from WM,
        there = _shift(split & (other_len > length), axis, -1, False)  # or its neighbour
        medial |= here | there
    return medial & domain


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    if not mask.any():
        return None
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _frame(shape: tuple[int, ...]) -> np.ndarray:
    f = np.zeros(shape, bool)
    for axis in range(3):
        for edge in (0, -1):
            idx = [slice(None)] * 3
            idx[axis] = edge
            f[tuple(idx)] = True
    return f


def _shift(a: np.ndarray, axis: int, s: int, fill) -> np.ndarray:
    """a[i + s] along ``axis`` (``fill`` beyond the edge)."""
    out = np.full_like(a, fill)
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if s > 0:
        src[axis], dst[axis] = slice(s, None), slice(None, -s)
    else:
        src[axis], dst[axis] = slice(None, s), slice(-s, None)
    out[tuple(dst)] = a[tuple(src)]
    return out


def _laplace(domain: np.ndarray, outer: np.ndarray, h: np.ndarray, tol: float) -> np.ndarray:
    """The potential: 0 on inner voxels, 1 on outer ones, harmonic in ``domain`` (7-point
    stencil with the voxel spacing), by Jacobi-preconditioned conjugate gradients."""
    u = outer.astype(np.float64)
    n = int(domain.sum())
    if n == 0:
        return u
    index = np.full(domain.shape, -1, np.int64)
    index[domain] = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros(n)
    me = index[domain]
    for axis, s in _OFFSETS:
        weight = 1.0 / h[axis] ** 2
        nb_index = _shift(index, axis, s, -1)[domain]
        nb_outer = _shift(outer, axis, s, True)[domain]
        diag += weight
        inside = nb_index >= 0
        rows.append(me[inside])
        cols.append(nb_index[inside])
        vals.append(np.full(int(inside.sum()), -weight))
        rhs += weight * (nb_outer & ~inside)
    A = sparse.csr_matrix((np.concatenate([diag, *vals]),
                           (np.concatenate([me, *rows]), np.concatenate([me, *cols]))),
                          shape=(n, n))
    precond = sparse.diags(1.0 / diag)
    x0 = np.full(n, 0.5)
    x, info = splinalg.cg(A, rhs, x0=x0, M=precond, rtol=tol * 1e-2, maxiter=5000)
    u[domain] = np.clip(x, 0.0, 1.0)
    return u


def _unit_gradient(u: np.ndarray, h: np.ndarray) -> np.ndarray:
    """grad u / |grad u| (central differences in mm), 0 where the gradient vanishes."""
    grad = np.stack(np.gradient(u, *h))
    norm = np.sqrt((grad**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        T = np.where(norm > 1e-9, grad / norm, 0.0)
    return T


def _path_length(source: np.ndarray, step: np.ndarray, T: np.ndarray, h: np.ndarray,
                 domain: np.ndarray, start: np.ndarray, start_source: np.ndarray, sign: int,
                 u: np.ndarray, settings: ThicknessSettings, levels: int = 96) -> np.ndarray:
    """Upwind solution of ``-sign * T . grad L = source`` in ``domain`` (Yezzi & Prince
    2003): the grey matter collected along the field line from ``start`` (sign -1: from
    where T comes, the white matter; +1: from where it goes, the outside). A voxel adds its
    own grey matter over its step along the line to its upwind neighbours' lengths, weighted
    by |T_d| / h_d; ``start`` voxels hold ``start_source`` (their own grey matter).

    Only neighbours truly upstream in the potential count (central differences can point T
    across a ridge of the discrete field), so the dependencies form no cycle, and the
    domain is swept in the order the field lines run: cut into ``levels`` slices of the
    potential, each updated from the slices before it (Gauss-Seidel between slices), until
    nothing changes by more than the tolerance (a few sweeps)."""
    shape = source.shape
    L = np.where(start, start_source * step, 0.0).ravel()
    known = (start | domain).ravel()
    cells = np.flatnonzero(domain.ravel())
    if cells.size == 0:
        return L.reshape(shape)
    coords = np.unravel_index(cells, shape)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    potential = u.ravel()
    here = potential[cells]
    neighbours, weights = [], []
    for axis in range(3):
        t = T[axis].ravel()[cells] * (-sign)
        s = np.where(t > 0, -1, 1)  # the side the field line comes from
        pos = coords[axis] + s
        ok = (pos >= 0) & (pos < shape[axis])
        nb = np.where(ok, cells + s * strides[axis], 0)
        upstream = potential[nb] < here if sign < 0 else potential[nb] > here
        ok &= known[nb] & upstream
        neighbours.append(nb)
        weights.append(np.where(ok, np.abs(t) / h[axis], 0.0))
    norm = weights[0] + weights[1] + weights[2]
    has = norm > 0
    weights = [np.where(has, w / np.where(has, norm, 1.0), 0.0) for w in weights]
    own = (source * step).ravel()[cells]
    order = np.argsort(here * (-sign), kind="stable")  # upstream first
    slices = np.array_split(order, min(levels, order.size))
    for _ in range(settings.sweeps):
        change = 0.0
        for part in slices:
            new = own[part] + weights[0][part] * L[neighbours[0][part]] \
                + weights[1][part] * L[neighbours[1][part]] \
                + weights[2][part] * L[neighbours[2][part]]
            target = cells[part]
            change = max(change, float(np.abs(new - L[target]).max(initial=0.0)))
            L[target] = new
        if change < settings.tolerance:
            break
    return L.reshape(shape)
