"""The one writer of ``dataset_description.json`` (raw and derivative datasets alike)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from trialprep import __version__
from trialprep.tables import write_json, write_text

CODE_URL = "https://github.com/trialprep/trialprep"


def write_dataset_description(root: str | Path, *, name: str, bids_version: str,
                              description: str, dataset_type: str = "derivative",
                              packages: Sequence[str] = (), license: str | None = None,
                              bidsignore: Sequence[str] = ()) -> Path:
    """Write ``root/dataset_description.json`` (and ``.bidsignore`` when given): the BIDS
    version from the study's configuration, GeneratedBy with trialprep's version and the
    versions of ``packages``; a derivative dataset also names the container it was made in
    and the environment's lock hash (a raw dataset stays the same wherever it is converted).
    Rewritten only when it changes, so concurrent jobs of one stage agree on it."""
    from trialprep.provenance import environment_record

    env = environment_record()
    generated = {"Name": "trialprep", "Version": __version__, "Description": description,
                 "CodeURL": CODE_URL}
    derivative = dataset_type == "derivative"
    if derivative and env["container"] != "native":
        generated["Container"] = {"Type": "oci", "Tag": env["container"]}
    versions = env["packages"] | _extra_versions(packages, env["packages"])
    desc: dict = {"Name": name, "BIDSVersion": bids_version, "DatasetType": dataset_type}
    if license:
        desc["License"] = license
    desc["GeneratedBy"] = [generated] + [{"Name": n, "Version": versions[n]} for n in packages]
    if derivative:
        desc["SourceDatasets"] = [{"URL": "bids::"}]
        desc["EnvironmentLockSHA256"] = env["lock_sha256"]
    root = Path(root)
    path = root / "dataset_description.json"
    if not path.exists() or json.loads(path.read_text()) != desc:
        write_json(desc, path)
    if bidsignore:
        text = "".join(f"{p}\n" for p in bidsignore)
        ignore = root / ".bidsignore"
        if not ignore.exists() or ignore.read_text() != text:
            write_text(text, ignore)
    return path


def _extra_versions(names: Sequence[str], known: dict[str, str]) -> dict[str, str]:
    from trialprep.provenance import package_versions

    return package_versions([n for n in names if n not in known])
