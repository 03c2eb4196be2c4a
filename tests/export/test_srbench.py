"""``srbench``: one table, JSON rows with the documented keys, failures carried on, CI gate."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import data_root

from srgan_export.bench import bench_cmd

KEYS = {"backend", "precision", "status", "reason", "tile", "batch", "size_mb", "psnr", "ssim",
        "parity_db", "ms_per_tile", "mp_per_s", "gflops", "pct_of_peak", "peak_mem_mb"}


def test_table_json_and_gate(generator_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [str(generator_file), "--backends", "torch,onnxruntime,tensorrt", "--tile", "32",
            "--repeats", "2", "--min-seconds", "0", "--json", str(out)]
    if (data_root() / "Set5").is_dir():
        args += ["--data", str(data_root() / "Set5")]
    r = CliRunner().invoke(bench_cmd, args)
    assert r.exit_code == 0, r.output
    assert "srbench on" in r.output and "parity dB" in r.output
    doc = json.loads(out.read_text())
    assert set(doc) >= {"machine", "limits", "rows"}
    assert doc["limits"]["cpu_matmul_fp32_gflops"] > 0
    rows = {(row["backend"], row["precision"]): row for row in doc["rows"]}
    assert all(set(row) >= KEYS | {"probe_pct", "under_load"} for row in rows.values())
    assert rows[("torch", "fp32")]["probe_pct"] > 0  # each CPU row probed the machine first
    ok = rows[("torch", "fp32")]
    assert ok["status"] == "ok" and ok["parity_db"] == "inf" and ok["ms_per_tile"] > 0
    assert ok["gflops"] > 0 and ok["psnr"] > 20 and ok["size_mb"] > 0
    assert rows[("onnxruntime", "fp32")]["status"] == "ok"
    assert rows[("onnxruntime", "fp32")]["parity_db"] == "inf" or \
        rows[("onnxruntime", "fp32")]["parity_db"] >= 60
    assert rows[("tensorrt", "fp16")]["status"] == "skipped"  # no GPU / TensorRT here
    int8 = rows[("onnxruntime", "int8")]  # quantized on <data>/T91/HR for the row
    if (data_root() / "T91" / "HR").is_dir():
        assert int8["status"] == "ok" and int8["parity_db"] >= 40, int8
        assert int8["pct_of_peak"] is None  # no int8 limit is measured
    else:
        assert int8["status"] == "failed" and "--calibration" in int8["reason"]
    # --min-psnr as a CI gate: an impossible floor fails the run.
    r = CliRunner().invoke(bench_cmd, [str(generator_file), "--backends", "torch", "--tile",
                                       "32", "--repeats", "1", "--min-seconds", "0",
                                       "--min-psnr", "99"])
    assert r.exit_code == 1
    r = CliRunner().invoke(bench_cmd, [str(generator_file), "--backends", "nope"])
    assert r.exit_code == 2
    r = CliRunner().invoke(bench_cmd, [str(generator_file), "--precisions", "fp8"])
    assert r.exit_code == 2 and "unknown precisions" in r.output


def test_precisions_filter_plans_only_those_rows() -> None:
    from srgan_export.bench import plan_rows

    rows = plan_rows("cpu", None, {"int8"})
    assert {(r.backend, r.precision) for r in rows} == {("onnxruntime", "int8"),
                                                        ("openvino", "int8")}


def test_peak_is_the_best_rate_seen_and_loaded_rows_are_flagged() -> None:
    """The peak measured at the start under load (a tenth of the real rate: 7005 % of peak
    was printed once) is replaced by the best rate the probes between rows see; a row whose
    probe ran slow is flagged, not silently reported."""
    from srgan_export.bench import PeakTracker, Row, settle_peaks

    peaks = PeakTracker()
    peaks.observe("fp32", 40.0)  # the start: another job had the cores
    limits = {"cpu_matmul_fp32_gflops": 40.0}
    rows = [Row("torch", "fp32", gflops=150.0), Row("openvino", "fp32", gflops=300.0),
            Row("onnxruntime", "int8", gflops=90.0)]
    probes = {0: 80.0, 1: 400.0, 2: 390.0}  # the machine went quiet after the first row
    for rate in probes.values():
        peaks.observe("fp32", rate)
    settle_peaks(rows, peaks, probes, limits, "cpu")
    assert limits["cpu_matmul_fp32_gflops"] == 400.0
    assert [r.pct_of_peak for r in rows] == [37.5, 75.0, None]
    assert [r.under_load for r in rows] == [True, False, False]
    assert rows[0].probe_pct == 20.0 and "measured under load" in rows[0].reason
