"""The web app in headless Chromium against `dbx`, on the same stack, with the same file.

Upload: from picking the file in the page until its progress bar reads 100
(fingerprinting in the page's workers, presigned chunk PUTs from the page,
completion, the gateway's verification), timed in the page itself, against
`dbx upload` of the same file (the whole command: start, fingerprint, chunks,
complete, wait). Both send 4 chunks at a time; a new user each run, so nothing
is deduplicated. The ratio is taken run by run (the two uploads of a run are
made one after the other, in turns which goes first), because the machine's
load moves more between runs than the code's speed does. Where the web app's
time goes comes from the page's Resource Timing: fingerprinting (until the
look-up of the fingerprint), announcing (until the first chunk PUT), sending
(until the last PUT is answered), finishing (complete, verification, drawn).

CPU seconds per upload, counted from /proc because this machine's load is shared and moves: what
each upload cost the client (Chromium's processes, all of them; the `dbx` command), the store and
the gateway. On a busy machine CPU seconds are time, and they move far less from run to run than
the time does.

Also SHA-256 throughput in the browser: WebCrypto (what the app uses on https
or localhost), the vendored WebAssembly and JavaScript SHA-256 (plain-http LAN
addresses), in the app's workers, and Python's hashlib as a yardstick.

    python -m bench.browser [--size-mib 256] [--runs 3] [--chunk-mib 8] [--other-web DIR]

``--other-web DIR``: also upload with the web app of another checkout of this
repository (its gateway on a stack of its own, same file, same runs): a before
and after measured together.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from bench.stack import BenchStack, Figure, command_line, descendants, print_table, process_cpu_seconds, ratio
from bench.dbx import MIB, Dbx, make_file
from tests.browser import CHROMIUM, CHROMIUM_ARGS, WebApp

ENGINES = {"webcrypto": "WebCrypto", "wasm": "WebAssembly (hash-wasm)", "fallback": "JS fallback (@noble/hashes)"}
PHASES = ("fingerprinting", "announcing", "sending", "finishing")
PROCESSES = ("client", "store", "gateway")

# Resolves window.benchDone with performance.now() when the upload's bar reads 100: the page's own
# clock, not a poll from outside that lands some time after it.
WATCH_BAR = """(label) => {
    window.benchDone = new Promise((resolve) => {
        const seen = new MutationObserver(() => {
            const bar = [...document.querySelectorAll("[role=progressbar]")]
                .find((element) => element.getAttribute("aria-label") === label);
            if (bar && bar.getAttribute("aria-valuenow") === "100") {
                seen.disconnect();
                resolve(performance.now());
            }
        });
        seen.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-valuenow"] });
    });
    performance.setResourceTimingBufferSize(10000);
    return performance.now();
}"""

# From the page's Resource Timing, relative to t0: the look-up of an earlier upload of the file
# (GET /files?fingerprint=: the fingerprint is known), the first chunk PUT (XMLHttpRequest, to the
# store) and when the last one was answered.
TIMELINE = """async (t0) => {
    const done = await window.benchDone;
    const entries = performance.getEntriesByType("resource").filter((entry) => entry.startTime >= t0);
    const puts = entries.filter((entry) => entry.initiatorType === "xmlhttprequest");
    const lookup = entries.find((entry) => entry.initiatorType === "fetch" && new URL(entry.name).searchParams.has("fingerprint"));
    const seconds = (at) => (at - t0) / 1000;
    return {
        done: seconds(done),
        hashed: seconds(lookup.startTime),
        first_put: seconds(Math.min(...puts.map((entry) => entry.startTime))),
        last_put: seconds(Math.max(...puts.map((entry) => entry.responseEnd))),
    };
}"""


@dataclass
class WebUpload:
    seconds: float
    phases: dict[str, float]
    cpu: dict[str, float]  # CPU seconds of the upload, by PROCESSES


def chromium_cpu() -> dict[int, float]:
    """CPU seconds so far of each of this benchmark's Chromium processes (descendants of this process): a
    tab's renderer ends with its context, so it is read while the tab is open."""
    found: dict[int, float] = {}
    for pid in descendants(os.getpid()):
        if is_chromium(command_line(pid)) and (seconds := process_cpu_seconds(pid)):  # 0: ended meanwhile
            found[pid] = seconds
    return found


def is_chromium(argv: list[str]) -> bool:
    """/usr/bin/chromium is a script that starts /usr/lib/chromium/chromium, whose children rewrite their
    command line (``/usr/lib/chromium/chromium --type=renderer ...`` as one string)."""
    return bool(argv) and Path(argv[0].split(" ", 1)[0]).name == "chromium"


def cpu_now(stack: BenchStack, client: float) -> dict[str, float]:
    return {"client": client, "store": stack.cpu_seconds("store"), "gateway": stack.cpu_seconds("gateway")}


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in PROCESSES}


def commands_cpu() -> float:
    """CPU seconds of this process's children that ended (the `dbx` commands)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def browser_upload(browser: Browser, stack: BenchStack, path: Path, timeout_ms: float) -> WebUpload:
    """A new user of the web app uploads ``path``: seconds from choosing it to the bar at 100, its phases and
    the CPU seconds it cost."""
    app = await WebApp.open(browser, stack.gateway_url)
    try:
        await app.sign_up()
        page = app.page
        # The CPU counts first, then the page's clock: walking /proc for Chromium's processes took 0.3-2 s on
        # this busy machine (one pass over /proc per process, before), which the clock counted as the upload's.
        chromium = chromium_cpu()
        before = cpu_now(stack, 0.0)
        started = await page.evaluate(WATCH_BAR, f"Upload of {path.name}")
        await page.get_by_label("Upload files").set_input_files(str(path))
        times = await asyncio.wait_for(page.evaluate(TIMELINE, started), timeout_ms / 1000)
        spent = sum(seconds - chromium.get(pid, 0.0) for pid, seconds in chromium_cpu().items())
        cpu = cpu_spent(before, cpu_now(stack, spent))
        phases = {
            "fingerprinting": times["hashed"],
            "announcing": times["first_put"] - times["hashed"],
            "sending": times["last_put"] - times["first_put"],
            "finishing": times["done"] - times["last_put"],
        }
        return WebUpload(times["done"], phases, cpu)
    finally:
        await app.page.context.close()


async def browser_hashing(page: Page, path: Path, chunk_size: int, engine: str) -> float:
    """Seconds the app's workers take to fingerprint the file with this engine."""
    await page.evaluate("""() => {
        const input = document.createElement("input");
        input.type = "file"; input.id = "bench-file"; input.hidden = true;
        document.body.append(input);
    }""")
    await page.locator("#bench-file").set_input_files(str(path))
    result = await page.evaluate(
        """async ([chunkSize, engine]) => {
            const { hashFile } = await import("/static/js/hashing.js");
            const file = document.getElementById("bench-file").files[0];
            const started = performance.now();
            const answer = await hashFile(file, chunkSize, { engine });
            document.getElementById("bench-file").remove();
            return { seconds: (performance.now() - started) / 1000, engine: answer.engine };
        }""",
        [chunk_size, engine],
    )
    if result["engine"] != engine:
        raise RuntimeError(f"the page hashed with {result['engine']}, not {engine}")
    return result["seconds"]


def python_hashing(path: Path, chunk_size: int) -> float:
    started = time.perf_counter()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            hashlib.sha256(block).digest()
    return time.perf_counter() - started


@dataclass
class Figures:
    """Seconds per run: each web app's upload (this checkout's first) and its phases, dbx's, the hashing."""

    web: dict[str, list[WebUpload]]
    dbx: list[float]
    dbx_cpu: list[dict[str, float]]
    hashing: dict[str, list[float]]


async def measure(stacks: dict[str, BenchStack], source: Path, runs: int, chunk_size: int) -> Figures:
    figures = Figures({name: [] for name in stacks}, [], [], {engine: [] for engine in (*ENGINES, "python")})
    here = next(iter(stacks.values()))
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for run in range(runs):
                turns = [*stacks, "dbx"]
                for turn in turns if run % 2 == 0 else turns[::-1]:
                    if turn == "dbx":
                        client = await asyncio.to_thread(Dbx, here, here.root / f"home-{run}")
                        before = cpu_now(here, commands_cpu())
                        seconds, _, _ = await asyncio.to_thread(client, "upload", str(source), "--parallel", "4")
                        figures.dbx.append(seconds)
                        figures.dbx_cpu.append(cpu_spent(before, cpu_now(here, commands_cpu())))
                    else:
                        figures.web[turn].append(await browser_upload(browser, stacks[turn], source, 600_000))
                app = await WebApp.open(browser, here.gateway_url)
                for engine in ENGINES:
                    figures.hashing[engine].append(await browser_hashing(app.page, source, chunk_size, engine))
                await app.page.context.close()
                figures.hashing["python"].append(python_hashing(source, chunk_size))
        finally:
            await browser.close()
    return figures


def speeds(mib: float, seconds: list[float]) -> Figure:
    return Figure([mib / s for s in seconds])


def seconds_figure(values: list[float]) -> str:
    """Seconds to the hundredth (a phase may take less than a tenth of one)."""
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def report(figures: Figures, mib: float, args: argparse.Namespace) -> None:
    dbx = figures.dbx
    rows = []
    for name, uploads in figures.web.items():
        label = "upload: web app in headless Chromium" + ("" if name == "this" else f", {name}")
        per_run = [d / upload.seconds for d, upload in zip(dbx, uploads, strict=True)]
        rows.append((label, f"{speeds(mib, [u.seconds for u in uploads])} MiB/s", f"{ratio(per_run)} dbx"))
    rows.append(("upload: dbx (the whole command)", f"{speeds(mib, dbx)} MiB/s", "1.00x"))
    hashing = {engine: speeds(mib, seconds) for engine, seconds in figures.hashing.items()}
    python, fallback = hashing["python"].median, hashing["fallback"].median
    for engine, label in ENGINES.items():
        versus = f"{hashing[engine].median / python:.2f}x hashlib"
        if engine == "wasm":
            versus += f", {hashing[engine].median / fallback:.1f}x JS"
        rows.append((f"SHA-256 in the browser: {label}", f"{hashing[engine]} MiB/s", versus))
    rows.append(("SHA-256 in Python: hashlib (one thread)", f"{hashing['python']} MiB/s", "1.00x"))
    print_table(
        f"Web app: {args.size_mib} MiB file, {args.chunk_mib} MiB chunks, 4 in parallel, "
        f"median of {args.runs} runs (min, max); ratios run by run",
        rows,
        ("measure", "figure", "ratio"),
    )
    phase_rows = []
    for name, uploads in figures.web.items():
        for phase in PHASES:
            values = [upload.phases[phase] for upload in uploads]
            share = statistics.median(upload.phases[phase] / upload.seconds for upload in uploads)
            who = "web app" if name == "this" else f"web app, {name}"
            phase_rows.append((f"{who}: {phase}", seconds_figure(values), f"{share:.0%}"))
    phase_rows.append(("dbx upload, the whole command", seconds_figure(dbx), ""))
    print_table("Where the web app's upload time goes (seconds)", phase_rows, ("phase", "seconds", "share"))
    cpu_rows = [cpu_row("web app" if name == "this" else f"web app, {name}", [u.cpu for u in uploads])
                for name, uploads in figures.web.items()]
    cpu_rows.append(cpu_row("dbx", figures.dbx_cpu))
    print_table("CPU seconds per upload, median (client: Chromium's processes, or the dbx command)", cpu_rows,
                ("upload", *PROCESSES, "total"))


def cpu_row(label: str, runs: list[dict[str, float]]) -> tuple[str, ...]:
    medians = [statistics.median(run[name] for run in runs) for name in PROCESSES]
    total = statistics.median(sum(run.values()) for run in runs)
    return (label, *(f"{value:.2f}" for value in medians), f"{total:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--other-web", metavar="DIR", help="another checkout whose web app uploads too")
    args = parser.parse_args(argv)
    chunk_size = args.chunk_mib * MIB
    with ExitStack() as stack:
        stacks = {"this": stack.enter_context(BenchStack(chunk_size=chunk_size))}
        if args.other_web:
            other = Path(args.other_web)
            stacks[f"before ({other.name})"] = stack.enter_context(BenchStack(chunk_size=chunk_size, checkout=other))
        source = stacks["this"].root / "browser-source.bin"
        make_file(source, args.size_mib * MIB)
        figures = asyncio.run(measure(stacks, source, args.runs, chunk_size))
    report(figures, args.size_mib, args)


if __name__ == "__main__":
    main()
