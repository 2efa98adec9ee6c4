"""Write a synthetic acquisition as a classic single-frame MR DICOM series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from trialprep.virtual_trial.scanners import Vendor

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
ORIENTATIONS = {  # DICOM ImageOrientationPatient (row direction, column direction), LPS
    "sagittal": ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]),
    "axial": ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
}


@dataclass
class Grid:
    """An acquisition grid: voxel (i=column, j=row, k=slice) -> LPS position."""

    shape: tuple  # (columns, rows, slices)
    spacing: tuple  # (column spacing, row spacing, slice thickness) mm
    row_dir: np.ndarray
    col_dir: np.ndarray
    origin_lps: np.ndarray  # ImagePositionPatient of voxel (0, 0, 0)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def affine_ras(self) -> np.ndarray:
        a = np.eye(4)
        a[:3, 0] = LPS_TO_RAS @ self.row_dir * self.spacing[0]
        a[:3, 1] = LPS_TO_RAS @ self.col_dir * self.spacing[1]
        a[:3, 2] = LPS_TO_RAS @ self.normal * self.spacing[2]
        a[:3, 3] = LPS_TO_RAS @ self.origin_lps
        return a

    def points_ras(self) -> np.ndarray:
        """RAS coordinates of every voxel, in (i, j, k) C order (N x 3)."""
        i, j, k = np.meshgrid(*[np.arange(n) for n in self.shape], indexing="ij")
        vox = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
        return (self.affine_ras @ vox)[:3].T


def make_grid(orientation: str, fov_mm: tuple, voxel_mm: tuple, centre_ras) -> Grid:
    """Grid of ``fov_mm`` (along rows, columns, slices) centred on ``centre_ras``."""
    row, col = (np.asarray(v) for v in ORIENTATIONS[orientation])
    shape = tuple(int(round(f / v)) for f, v in zip(fov_mm, voxel_mm, strict=True))
    normal = np.cross(row, col)
    centre_lps = LPS_TO_RAS @ np.asarray(centre_ras, float)
    half = [(n - 1) * v / 2 for n, v in zip(shape, voxel_mm, strict=True)]
    origin = centre_lps - row * half[0] - col * half[1] - normal * half[2]
    return Grid(shape, tuple(voxel_mm), row, col, origin)


def _private(ds: Dataset, group: int, creator: str, elements: dict) -> None:
    block = ds.private_block(group, creator, create=True)
    for offset, (vr, value) in elements.items():
        block.add_new(offset, vr, value)


def write_series(volume: np.ndarray, grid: Grid, out_dir: Path, vendor: Vendor, header: dict,
                 software: list, series_number: int, uid_seed: str) -> list[Path]:
    """Write ``volume`` (i, j, k) as one file per slice; ``header`` carries patient/study
    attributes (including the PHI a real site would send). Returns the file paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vol = np.clip(np.round(volume), 0, 4095).astype(np.uint16)
    series_uid = generate_uid(entropy_srcs=[uid_seed, "series"])
    frame_uid = generate_uid(entropy_srcs=[uid_seed, "frame"])
    paths = []
    for k in range(grid.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "sop", str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, sop_uid
        ds.Modality = "MR"
        for kw, value in header.items():
            setattr(ds, kw, value)
        ds.Manufacturer, ds.ManufacturerModelName = vendor.manufacturer, vendor.model
        ds.SoftwareVersions = software if len(software) > 1 else software[0]
        ds.MagneticFieldStrength = 3.0
        ds.SeriesDescription, ds.ProtocolName = vendor.series_description, vendor.protocol_name
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series_uid, frame_uid
        ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = series_number, 1, k + 1
        ds.ImageType = vendor.image_type
        ds.MRAcquisitionType = "3D"
        for kw, value in vendor.sequence.items():
            setattr(ds, kw, value)
        ds.SliceThickness = grid.spacing[2]
        ds.SpacingBetweenSlices = grid.spacing[2]
        ds.PixelSpacing = [grid.spacing[1], grid.spacing[0]]  # row spacing, column spacing
        ds.ImageOrientationPatient = [*grid.row_dir.tolist(), *grid.col_dir.tolist()]
        ipp = grid.origin_lps + grid.normal * grid.spacing[2] * k
        ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
        ds.SliceLocation = round(float(ipp @ grid.normal), 4)
        ds.PatientPosition = "HFS"
        ds.Rows, ds.Columns = grid.shape[1], grid.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 600, 1200
        ds.PixelData = np.ascontiguousarray(vol[:, :, k].T).tobytes()  # rows x columns
        _vendor_private(ds, vendor, header)
        path = out_dir / f"IM{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _vendor_private(ds: Dataset, vendor: Vendor, header: dict) -> None:
    """Vendor-typical private blocks, plus a site block that leaks identifiers (as some
    PACS do), which de-identification must remove."""
    name = str(header.get("PatientName", ""))
    if vendor.manufacturer == "SIEMENS":
        _private(ds, 0x0019, "SIEMENS MR HEADER", {0x08: ("CS", "IMAGE NUM 4"),
                                                   0x09: ("LO", "1.0")})
        _private(ds, 0x0051, "SIEMENS MR HEADER", {0x0A: ("LO", "TA 05:21"),
                                                   0x0F: ("LO", "HEA;HEP"),
                                                   0x11: ("LO", "p2")})
    elif vendor.manufacturer.startswith("GE"):
        _private(ds, 0x0009, "GEMS_IDEN_01", {0x02: ("SH", str(header.get("StationName", ""))[
            :16]), 0x04: ("SH", "MR750")})
        _private(ds, 0x0019, "GEMS_ACQU_01", {0x9C: ("LO", "efgre3d")})
    else:
        _private(ds, 0x2001, "Philips Imaging DD 001", {0x0B: ("CS", "SAGITTAL"),
                                                        0x20: ("LO", "TFE")})
        _private(ds, 0x2005, "Philips MR Imaging DD 001", {0x20: ("SL", 1)})
    _private(ds, 0x0033, "TRIALSITE PACS 1.0", {
        0x01: ("LO", name), 0x02: ("LO", f"MRN {header.get('PatientID', '')}"),
        0x03: ("DA", header.get("PatientBirthDate", ""))})


def corrupt_copy(src: Path, dest: Path, keep_fraction: float = 0.6) -> None:
    """A truncated copy of a DICOM file (an interrupted transfer)."""
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep_fraction)])



