"""Pipeline stages: DICOM intake and (later) Nipype preprocessing workflows."""
