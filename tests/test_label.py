"""Labeller: numbers equal a direct tblite call, metadata, resume, failed frames, sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import CalculationFailed
from ase.calculators.emt import EMT

from legato.cli.main import main
from legato.data.label import (
    SOURCE_INDEX,
    complete_frame_count,
    frame_text,
    label_frames,
    read_labelled,
)
from legato.errors import LegatoError

tblite_ase = pytest.importorskip("tblite.ase")


def two_nh3(shift: float = 0.0) -> Atoms:
    """Two NH3 molecules in a periodic 7 Å cube (8 atoms: a fast tblite system)."""
    a, b = molecule("NH3"), molecule("NH3")
    b.rotate(120, "x")
    b.positions += [3.2 + shift, 0.4, 0.3]
    atoms = a + b
    atoms.positions += 2.0
    atoms.cell = np.eye(3) * 7.0
    atoms.pbc = True
    return atoms


def frames(n: int) -> list[Atoms]:
    return [two_nh3(0.1 * k) for k in range(n)]


class FlakyEMT(EMT):
    """EMT that fails like a non-converged SCF when the second molecule is far out."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if atoms is not None and atoms.positions[4, 0] > 5.35:
            raise CalculationFailed("SCF not converged in 250 cycles")
        super().calculate(atoms, properties, system_changes)


def make_flaky() -> FlakyEMT:
    return FlakyEMT()


class CrashingEMT(EMT):
    """EMT whose process dies (like a segfault in a QM code) on one particular frame."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if atoms is not None and 5.25 < atoms.positions[4, 0] < 5.35:
            import os

            os._exit(11)
        super().calculate(atoms, properties, system_changes)


def make_crashing() -> CrashingEMT:
    return CrashingEMT()


def test_labels_equal_a_direct_tblite_call(tmp_path: Path) -> None:
    out = tmp_path / "l.extxyz"
    summary = label_frames(frames(2), out, "tblite:GFN1-xTB", progress=False)
    assert summary["labelled"] == 2 and summary["failed"] == 0
    got = read_labelled(out)
    for k, frame in enumerate(frames(2)):
        frame.calc = tblite_ase.TBLite(method="GFN1-xTB", verbosity=0)
        e, f, s = frame.get_potential_energy(), frame.get_forces(), frame.get_stress()
        assert got[k].get_potential_energy() == pytest.approx(e, abs=1e-7)
        assert np.allclose(got[k].get_forces(), f, atol=1e-7)
        assert np.allclose(got[k].get_stress(), s, atol=1e-9)
        assert np.allclose(got[k].positions, frame.positions)
    # forces are the negative energy gradient (a physics check on what is stored)
    a = frames(1)[0]
    a.calc = tblite_ase.TBLite(method="GFN1-xTB", verbosity=0)
    h = 1e-4
    a.positions[1, 2] += h
    ep = a.get_potential_energy()
    a.positions[1, 2] -= 2 * h
    em = a.get_potential_energy()
    assert -(ep - em) / (2 * h) == pytest.approx(got[0].get_forces()[1, 2], abs=2e-4)


def test_metadata_in_every_frame_and_sidecar(tmp_path: Path) -> None:
    from tblite.library import get_version

    out = tmp_path / "l.extxyz"
    label_frames(frames(1), out, "tblite:GFN2-xTB", settings={"accuracy": 0.5}, progress=False)
    version = ".".join(map(str, get_version()))
    info = read_labelled(out)[0].info
    assert info["method"] == "GFN2-xTB" and info["program"] == "tblite"
    assert info["program_version"] == version
    assert json.loads(info["label_settings"])["accuracy"] == 0.5
    side = json.loads((tmp_path / "l.extxyz.meta.json").read_text())
    assert side["program_version"] == version and side["calculator"] == "tblite:GFN2-xTB"
    # resuming with another method is refused, the file untouched
    before = out.read_bytes()
    with pytest.raises(LegatoError, match="different settings"):
        label_frames(frames(2), out, "tblite:GFN1-xTB", progress=False)
    assert out.read_bytes() == before


def test_resume_skips_done_frames_and_repairs_a_partial_tail(tmp_path: Path) -> None:
    out = tmp_path / "l.extxyz"
    data = frames(4)
    s1 = label_frames(data[:2], out, "emt", progress=False)
    assert s1["labelled"] == 2
    first = out.read_bytes()
    # an interrupted write leaves half a frame behind
    partial = frame_text(data[2])
    with open(out, "a") as fh:
        fh.write(partial[: len(partial) // 2])
    assert complete_frame_count(out) == 2
    assert out.read_bytes() == first  # the partial tail was cut off
    s2 = label_frames(data, out, "emt", progress=False)
    assert s2["skipped_done"] == 2 and s2["labelled"] == 2 and s2["total_in_output"] == 4
    assert out.read_bytes().startswith(first)  # nothing already written was touched
    got = read_labelled(out)
    assert [a.info[SOURCE_INDEX] for a in got] == [0, 1, 2, 3]
    for a, ref in zip(got, data, strict=True):
        ref.calc = EMT()
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-8)
    s3 = label_frames(data, out, "emt", progress=False)
    assert s3["labelled"] == 0 and s3["skipped_done"] == 4


def test_failing_frame_is_skipped_and_reported(tmp_path: Path, caplog) -> None:
    out = tmp_path / "l.extxyz"
    data = frames(4)  # frames 2 and 3 have the second molecule beyond x = 5.35 Å
    summary = label_frames(data, out, "python:test_label:make_flaky", progress=False)
    assert summary["labelled"] == 2 and summary["failed"] == 2
    got = read_labelled(out)
    assert [a.info[SOURCE_INDEX] for a in got] == [0, 1]  # no zero-filled placeholders
    lines = (tmp_path / "l.extxyz.failed.jsonl").read_text().splitlines()
    assert [json.loads(x)[SOURCE_INDEX] for x in lines] == [2, 3]
    assert "SCF not converged" in lines[0]
    assert "frame 2 skipped" in caplog.text


def test_real_scf_failure_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "l.extxyz"
    summary = label_frames(frames(2), out, "tblite:GFN1-xTB", settings={"max_iterations": 1}, progress=False)
    assert summary["failed"] == 2 and summary["labelled"] == 0
    assert complete_frame_count(out) == 0
    assert "SCF" in (tmp_path / "l.extxyz.failed.jsonl").read_text()


def test_two_workers_give_the_same_labels_in_input_order(tmp_path: Path) -> None:
    data = frames(4)
    serial, parallel = tmp_path / "s.extxyz", tmp_path / "p.extxyz"
    label_frames(data, serial, "tblite:GFN1-xTB", progress=False)
    label_frames(data, parallel, "tblite:GFN1-xTB", workers=2, progress=False)
    a, b = read_labelled(serial), read_labelled(parallel)
    assert [x.info[SOURCE_INDEX] for x in b] == [0, 1, 2, 3]
    for x, y in zip(a, b, strict=True):
        assert x.get_potential_energy() == pytest.approx(y.get_potential_energy(), abs=1e-8)
        assert np.allclose(x.get_forces(), y.get_forces(), atol=1e-8)


@pytest.mark.slow
def test_worker_crash_skips_only_the_crashing_frame(tmp_path: Path) -> None:
    out = tmp_path / "l.extxyz"
    data = frames(5)  # frame 1 kills its worker process
    summary = label_frames(data, out, "python:test_label:make_crashing", workers=2, progress=False)
    assert summary["labelled"] == 4 and summary["failed"] == 1
    assert [a.info[SOURCE_INDEX] for a in read_labelled(out)] == [0, 2, 3, 4]
    failed = json.loads((tmp_path / "l.extxyz.failed.jsonl").read_text())
    assert failed[SOURCE_INDEX] == 1 and "died" in failed["error"]


@pytest.mark.parametrize(
    "calc,out_name",
    [("tblite:GFN9-xTB", "o.extxyz"), ("nonsense", "o.extxyz"), ("emt", "o.extxyz.gz")],
)
def test_cli_label_errors_exit_2_with_one_line(calc, out_name, tmp_path, capsys) -> None:
    import ase.io

    src = tmp_path / "in.extxyz"
    ase.io.write(src, frames(1))
    rc = main(["data", "label", str(src), str(tmp_path / out_name), "--calculator", calc])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_cli_label_writes_frames(tmp_path, capsys) -> None:
    import ase.io

    src, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    ase.io.write(src, frames(2))
    assert main(["data", "label", str(src), str(out), "--calculator", "emt"]) == 0
    assert complete_frame_count(out) == 2
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["labelled"] == 2


# ------------------------------------------------------------------ sampling pipeline


def test_rigid_molecule_scaling_keeps_bonds_and_scales_cell() -> None:
    from legato.data.liquid import build_liquid, intact_molecules
    from legato.data.sampling import scale_molecule_centres

    atoms = build_liquid("NH3", 16, density_g_cm3=0.7, seed=0)
    small = scale_molecule_centres(atoms, 0.9, 4)
    assert np.allclose(small.cell.array, 0.9 * atoms.cell.array)
    for m in range(16):
        idx = list(range(4 * m, 4 * m + 4))
        d0 = atoms[idx].get_all_distances(mic=True)
        d1 = small[idx].get_all_distances(mic=True)
        assert np.allclose(d0, d1, atol=1e-9)
    assert intact_molecules(small, "NH3")


def test_md_pipeline_resume_split_and_finalize(tmp_path: Path) -> None:
    """Plumbing of the sampling pipeline with a cheap calculator (EMT on a small box)."""
    from legato.data import read_frames
    from legato.data.sampling import (
        derive_frames,
        finalize,
        load_md_frames,
        plan_trajectories,
        run_trajectory,
    )

    kw = dict(molecules=4, density_g_cm3=0.5, equil_steps=2, calculator="emt", stride=2)
    md = tmp_path / "md"
    straight = plan_trajectories([300], 1, seed=3, steps=8, **kw)[0]
    run_trajectory(straight, tmp_path / "ref")
    first = plan_trajectories([300], 1, seed=3, steps=4, **kw)[0]
    assert run_trajectory(first, md)["frames_written"] == 2
    res = run_trajectory(straight, md)  # resumes from the stored step 6
    assert res["frames_resumed"] == 2 and res["frames_written"] == 2
    ref = read_labelled(tmp_path / "ref" / "md_T300_b0.extxyz")
    got = read_labelled(md / "md_T300_b0.extxyz")
    assert [a.info["step"] for a in got] == [4, 6, 8, 10]
    for a in got:  # stored labels are the raw calculator's (no MD constraint applied)
        fresh = a.copy()
        fresh.calc = EMT()
        assert np.allclose(a.get_forces(), fresh.get_forces(), atol=1e-6)
        assert a.get_potential_energy() == pytest.approx(fresh.get_potential_energy(), abs=1e-6)
    for a, b in zip(ref, got, strict=True):
        assert np.allclose(a.positions, b.positions, atol=1e-6)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-5)
    from dataclasses import asdict

    (md / "md_plan.json").write_text(json.dumps([asdict(straight)]))
    mdf = load_md_frames(md)
    derived = derive_frames(mdf, n_strained=4, n_displaced=2, seed=0)
    assert [a.info["source"] for a in derived] == [
        "strain_affine",
        "strain_affine",
        "strain_molecular",
        "strain_molecular",
        "displaced",
        "displaced",
    ]
    for a in derived[:4]:
        s = a.info["scale"]
        assert 0.85 <= s <= 0.95 or 1.05 <= s <= 1.10
    lab = tmp_path / "derived.extxyz"
    label_frames(derived, lab, "emt", progress=False)
    out, split = tmp_path / "ds.extxyz.gz", tmp_path / "split.json"
    summary = finalize(md, lab, out, split, seed=0)
    assert summary["frames"] == 10
    ds = read_frames(out)  # ASE reads the gzip transparently
    assert len(ds) == 10 and all("momenta" not in a.arrays for a in ds)
    sp = json.loads(split.read_text())
    idx = sorted(sp["train"] + sp["validation"] + sp["test"])
    assert idx == list(range(10))
    for name in ("train", "validation", "test"):
        assert all(ds[i].info["split"] == name for i in sp[name])
    for i, a in enumerate(ds[4:], start=4):  # derived frames follow their parent
        parent = [j for j in range(4) if ds[j].info["step"] == a.info["parent_step"]][0]
        assert ds[i].info["split"] == ds[parent].info["split"]
    with pytest.raises(LegatoError, match="exists"):
        finalize(md, lab, out, tmp_path / "other.json", seed=0)
