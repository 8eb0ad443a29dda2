"""`make bench`'s swap phase: an environment refreshed without going dark, and with more than one core.

On a database dominated by one table (90% of the rows, as many are), one environment loads alone:

  swap_vs_in_place        load: swap with one connection against the load in place (one transaction)
  parallel_load_vs_single swap with jobs: 2 against jobs: 1, both from the snapshot captured in parts
  split_vs_whole          snapshot (snapshot.jobs: 2) then swap (jobs: 2), the large table split into
                          parts against not split
  reader_max_wait_s       the longest a reader polling the environment every 50 ms waited for one
                          query during a swap, and during a load in place

Every contender alternates with its rival, `--repeat` rounds; the figures are ratios of medians.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from pathlib import Path

from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account

from .workers import Phase, load_command, run_workers_timed, snapshot_command, swap_command

SCHEMA = """
CREATE TABLE public.accounts (id bigint PRIMARY KEY, name text NOT NULL, created timestamptz NOT NULL);
CREATE TABLE public.products (id bigint PRIMARY KEY, title text NOT NULL, price numeric(12, 2));
CREATE TABLE public.events (
    id bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES public.accounts (id),
    product_id bigint REFERENCES public.products (id),
    happened timestamptz NOT NULL,
    kind text NOT NULL,
    amount numeric(12, 2),
    note text
);
CREATE INDEX events_account ON public.events (account_id);
CREATE INDEX events_happened ON public.events (happened);
CREATE VIEW public.recent_events AS SELECT id, account_id, happened FROM public.events WHERE happened > '2025-06-01';
"""
DATA = """
INSERT INTO public.accounts SELECT g, 'account ' || g, timestamptz '2024-01-01' + g * interval '1 minute'
FROM generate_series(1, {small}) g;
INSERT INTO public.products SELECT g, 'product ' || g, (g % 1000) * 1.5 FROM generate_series(1, {small}) g;
INSERT INTO public.events SELECT g, 1 + g % {small}, 1 + (g * 7) % {small},
       timestamptz '2025-01-01' + g * interval '7 seconds', (ARRAY['view', 'click', 'buy'])[1 + g % 3],
       (g % 10000) / 100.0, CASE WHEN g % 5 = 0 THEN 'note ' || g END
FROM generate_series(1, {big}) g;
"""
POLL_SECONDS = 0.05


class SwapPhase(Phase):
    prefix = "swap"

    def __init__(self, server: EmbeddedPostgres, accounts: dict[str, Account], root: Path, rows: int, jobs: int):
        super().__init__(server, accounts, ("staging",), root, jobs)
        self.rows = rows
        self.split_folder = root / "swap_split_snapshot" / self.folder.name
        self.waits: dict[str, list[float]] = {"swap": [], "in_place": []}
        self.split_bytes = 0
        self.csv_bytes = 0

    def setup(self) -> None:
        big = int(self.rows * 0.9)
        self.create(SCHEMA, DATA.format(big=big, small=max(1, (self.rows - big) // 2)))
        with self.server.connect(self.database("prod")) as conn:
            size = conn.execute("SELECT pg_table_size('public.events')").fetchone()[0]
            conn.execute("VACUUM ANALYZE")
        # Parts of about an eighth of the table: enough for two connections to stay busy to the end.
        self.split_bytes = max(1 << 20, size // 8)
        self._snapshot(self.folder, None)
        self._snapshot(self.split_folder, self.split_bytes)
        from replication.engine.snapshot.verify import verify_snapshot

        self.csv_bytes = verify_snapshot(self.folder, deep=False).total_bytes
        with self.server.connect() as admin:
            admin.execute("CHECKPOINT")

    def _snapshot(self, folder: Path, split_bytes: int | None) -> float:
        shutil.rmtree(folder, ignore_errors=True)
        address = self.server.address(self.database("prod"))
        seconds, _, _ = run_workers_timed([("snapshot", snapshot_command(
            address, self.reader.user, self.reader.password, folder, self.jobs, split_bytes))])
        return seconds

    def _account(self):
        return self.loaders["staging"]

    def _checkpoint(self) -> None:
        """Untimed, before each contender: a load writes about twice its CSV in WAL, so every few
        loads a checkpoint started inside one contender's time, by chance, and its writes (and the
        full-page images of the pages it then touched first) were that contender's alone."""
        with self.server.connect() as admin:
            admin.execute("CHECKPOINT")

    def swap(self, folder: Path, jobs: int) -> float:
        self._checkpoint()
        account = self._account()
        _, _, own = run_workers_timed([("staging", swap_command("staging", self.server.address(self.database("staging")),
                                                                  account.user, account.password, folder, jobs))])
        return own["staging"]

    def in_place(self, folder: Path) -> float:
        self._checkpoint()
        account = self._account()
        _, _, own = run_workers_timed([("staging", load_command("staging", self.server.address(self.database("staging")),
                                                                  account.user, account.password, folder))])
        return own["staging"]

    def snapshot_and_swap(self, split: bool) -> float:
        folder = self.split_folder if split else self.folder
        self._checkpoint()
        return self._snapshot(folder, self.split_bytes if split else None) + self.swap(folder, 2)

    def watched(self, mode: str) -> float:
        """One load while a reader polls the environment every 50 ms; records the reader's longest wait."""
        stop, waits = threading.Event(), []

        def poll() -> None:
            account = self._account()
            with self.server.connect(self.database("staging"), user=account.user, password=account.password) as conn:
                while not stop.is_set():
                    began = time.monotonic()
                    conn.execute("SELECT id FROM public.events LIMIT 1").fetchone()
                    waits.append(time.monotonic() - began)
                    time.sleep(POLL_SECONDS)

        reader = threading.Thread(target=poll, daemon=True)
        reader.start()
        try:
            seconds = self.swap(self.folder, 2) if mode == "swap" else self.in_place(self.folder)
        finally:
            stop.set()
            reader.join()
        self.waits[mode].append(max(waits))
        return seconds

    def check_copy(self) -> None:
        with self.server.connect(self.database("staging")) as conn:
            count = conn.execute("SELECT count(*) FROM public.events").fetchone()[0]
        if count != int(self.rows * 0.9):
            raise SystemExit(f"swap phase: staging holds {count} events, not {int(self.rows * 0.9)}")


def run_swap_phase(phase: SwapPhase, repeat: int) -> dict:
    print(f"\n=== one environment, {phase.rows:,} rows, 90% in one table: swap and in place ===", flush=True)
    started = time.monotonic()
    phase.setup()
    print(f"created, filled and captured in {time.monotonic() - started:.1f} s (parts of "
          f"{phase.split_bytes / 1e6:,.0f} MB)", flush=True)
    pairs = {
        "swap_vs_in_place": (("swap_jobs1", lambda: phase.swap(phase.folder, 1)),
                             ("in_place", lambda: phase.in_place(phase.folder))),
        "parallel_load_vs_single": (("swap_jobs2", lambda: phase.swap(phase.split_folder, 2)),
                                    ("swap_jobs1_split", lambda: phase.swap(phase.split_folder, 1))),
        "split_vs_whole": (("snap_swap_split", lambda: phase.snapshot_and_swap(True)),
                           ("snap_swap_whole", lambda: phase.snapshot_and_swap(False))),
        "reader": (("watched_swap", lambda: phase.watched("swap")), ("watched_in_place", lambda: phase.watched("in_place"))),
    }
    seconds: dict[str, list[float]] = {}
    for round_ in range(repeat):
        for pair in pairs.values():
            for name, contender in (pair if round_ % 2 == 0 else pair[::-1]):
                took = contender()
                phase.check_copy()
                seconds.setdefault(name, []).append(took)
                print(f"  round {round_ + 1} {name:<18} {took:7.2f} s", flush=True)
    median = {name: statistics.median(runs) for name, runs in seconds.items()}
    for name, runs in seconds.items():
        print(f"{name:<18} {median[name]:9.2f} {', '.join(f'{s:.2f}' for s in runs):>24}")
    mb = phase.csv_bytes / 1e6
    print(f"{mb:,.0f} MB of CSV: swap jobs 1 {mb / median['swap_jobs1']:.1f} MB/s, jobs 2 (split) "
          f"{mb / median['swap_jobs2']:.1f} MB/s, in place {mb / median['in_place']:.1f} MB/s", flush=True)
    return {
        "swap_mb_per_s_jobs1": mb / median["swap_jobs1"], "swap_mb_per_s_jobs2": mb / median["swap_jobs2"],
        "swap_vs_in_place": median["swap_jobs1"] / median["in_place"],
        "parallel_load_vs_single": median["swap_jobs2"] / median["swap_jobs1_split"],
        "split_vs_whole": median["snap_swap_split"] / median["snap_swap_whole"],
        "reader_max_wait_s_swap": max(phase.waits["swap"]),
        "reader_max_wait_s_in_place": max(phase.waits["in_place"]),
        "swap_seconds_jobs1": median["swap_jobs1"], "swap_seconds_jobs2": median["swap_jobs2"],
    }
