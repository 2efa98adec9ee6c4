"""Visit assignment and the completeness table against the expected visit schedule."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd


def assign_visit(visits: list[dict], timepoint: str, day_offset: int | None) -> tuple[str | None,
                                                                                      str]:
    """(visit id, reason-if-none). The DICOM ClinicalTrialTimePointID wins when it names a
    visit; otherwise the study's day offset from the subject's baseline must fall in a
    visit's window."""
    tp = (timepoint or "").strip().upper()
    if tp:
        for v in visits:
            if tp in [t.upper() for t in v.get("timepoints", [])] or tp == v["id"].upper():
                return v["id"], ""
    if day_offset is None:
        return None, "no study date and no known ClinicalTrialTimePointID: visit unknown"
    for v in visits:
        if abs(day_offset - v["day"]) <= v["window"]:
            return v["id"], ""
    return None, (f"study on day {day_offset} after the subject's baseline fits no scheduled "
                  "visit window")


def completeness(subjects: pd.DataFrame, series: pd.DataFrame, visits: list[dict],
                 required: list[str], real_baseline: dict[str, date | None],
                 as_of: date) -> pd.DataFrame:
    """site x subject x visit: received / deviant / missing / pending, with details."""
    rows = []
    for _, subj in subjects.sort_values(["site", "subject"]).iterrows():
        mine = series[series["subject"] == subj["subject"]]
        base = real_baseline.get(subj["subject"])
        for v in visits:
            ses = mine[mine["session"] == v["id"]]
            detail = []
            if len(ses) == 0:
                due = base is None or base + timedelta(days=v["day"] + v["window"]) < as_of
                later = any((mine["session"] == w["id"]).any() for w in visits
                            if w["day"] > v["day"])
                status = "missing" if (due or later) else "pending"
                detail.append("no data received" + (" (window closed)" if due and base else ""))
            else:
                got = set(ses.loc[ses["verdict"] != "quarantined", "series_type"])
                absent = [t for t in required if t not in got]
                if absent:
                    detail.append(f"required series absent: {', '.join(absent)}")
                for _, s in ses.iterrows():
                    if s["verdict"] in ("deviant", "quarantined"):
                        detail.append(f"{s['series_type']} #{s['series_number']} "
                                      f"{s['verdict']}: {s['deviations']}")
                status = "deviant" if detail else "received"
            rows.append({"site": subj["site"], "subject": subj["subject"], "visit": v["id"],
                         "visit_name": v.get("name", ""), "status": status,
                         "detail": "; ".join(detail)})
    return pd.DataFrame(rows, columns=["site", "subject", "visit", "visit_name", "status",
                                       "detail"])
