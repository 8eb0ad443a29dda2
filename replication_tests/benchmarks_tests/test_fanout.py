"""`make bench` at a tiny size: every contender runs and the summary line is complete (no timings asserted)."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_run_prints_every_contender_and_the_ratios():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fanout.py"), "--rows", "3000", "--repeat", "1", "--tables", "30",
         "--large-values", "1", "--large-mib", "9"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for contender in ("ours", "ours_masked", "ours_subset", "subset_alone", "psql_plain", "psql_tuned", "psql_required", "dagster", "ours_snapshot", "psql_dump",
                      "ours_zstd_snapshot", "ours_zstd", "ours_s3_snapshot", "ours_s3", "pandas"):
        assert any(line.startswith(contender + " ") for line in lines), contender
    assert re.fullmatch(r"many_tables_vs_pg_restore=[\d.]+ large_values_peak_rss_mib=\d+ large_values_step_peak_rss_mib=\d+ "
                        r"compressible_values_peak_rss_mib=\d+ compressible_values_step_peak_rss_mib=\d+",
                        lines[-6]), lines[-6]
    for contender in ("many_ours", "many_pg_restore"):
        assert any(line.startswith(contender + " ") for line in lines), contender
    assert re.fullmatch(r"snapshot_ratio_vs_psql_dump=[\d.]+ masked_vs_unmasked=[\d.]+ end_to_end_vs_tuned=[\d.]+ "
                        r"required_vs_tuned=[\d.]+ ratio_vs_required=[\d.]+", lines[-5]), lines[-5]
    last = lines[-4]
    assert re.fullmatch(r"ratio_vs_psql=[\d.]+ ratio_vs_tuned=[\d.]+ pandas_slowdown=[\d.]+ peak_rss_mib=\d+ rss_growth=-", last), last
    assert int(re.search(r"peak_rss_mib=(\d+)", last).group(1)) > 50  # a Dagster step was measured
    assert re.fullmatch(r"compressed_vs_plain=[\d.]+ s3_vs_local=[\d.]+ snapshot_bytes_ratio=[\d.]+ "
                        r"dagster_vs_engine=[\d.]+ store_peak_rss_mib=\d+", lines[-3]), lines[-3]
    assert re.fullmatch(r"subset_load_vs_full=[\d.]+ subset_rows_kept=[\d.]+ subset_load_vs_full_parallel=[\d.]+",
                        lines[-2]), lines[-2]
    assert 0 < float(re.search(r"subset_rows_kept=([\d.]+)", lines[-2]).group(1)) < 0.5  # Dev holds a subset
    for contender in ("swap_jobs1", "in_place", "swap_jobs2", "swap_jobs1_split", "snap_swap_split", "snap_swap_whole",
                      "watched_swap", "watched_in_place"):
        assert any(line.startswith(contender + " ") for line in lines), contender
    assert re.fullmatch(r"reader_max_wait_s_swap=[\d.]+ reader_max_wait_s_in_place=[\d.]+ parallel_load_vs_single=[\d.]+ "
                        r"split_vs_whole=[\d.]+ swap_vs_in_place=[\d.]+ swap_mb_per_s_jobs1=[\d.]+ "
                        r"swap_mb_per_s_jobs2=[\d.]+", lines[-1]), lines[-1]
    # A swap keeps the reader's waits to the switch's moment; a load in place makes it wait for the load.
    assert float(re.search(r"reader_max_wait_s_swap=([\d.]+)", lines[-1]).group(1)) < 1.0
