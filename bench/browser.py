"""The web app in headless Chromium against `dbx`, on the same stack, with the same file.

Upload: from picking the file in the page until its progress bar reads 100
(fingerprinting in the page's worker, presigned chunk PUTs from the page,
completion, the gateway's verification), against `dbx upload` of the same file
(fingerprint, chunks, complete, wait). Both send 4 chunks at a time; a new user
each run, so nothing is deduplicated. Also SHA-256 throughput in the browser:
WebCrypto in the worker (what the app uses on https or localhost), the vendored
JavaScript fallback (plain-http LAN addresses), and Python's hashlib as a yardstick.

    python -m bench.browser [--size-mib 256] [--runs 3] [--chunk-mib 8]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from bench.stack import BenchStack, Figure, print_table
from bench.dbx import MIB, Dbx, make_file
from tests.browser import CHROMIUM, CHROMIUM_ARGS, WebApp



async def browser_upload(page: Page, path: Path, timeout_ms: float) -> float:
    """Seconds from choosing the file to the page's progress bar at 100 (verified by the gateway)."""
    started = time.perf_counter()
    await page.get_by_label("Upload files").set_input_files(str(path))
    bar = page.get_by_role("progressbar", name=f"Upload of {path.name}")
    await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=timeout_ms)
    return time.perf_counter() - started


async def browser_hashing(page: Page, path: Path, chunk_size: int, engine: str) -> float:
    """Seconds the app's worker takes to fingerprint the file with this engine."""
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


async def measure(stack: BenchStack, source: Path, runs: int, chunk_size: int) -> dict[str, list[float]]:
    mib = source.stat().st_size / MIB
    figures: dict[str, list[float]] = {"web": [], "dbx": [], "webcrypto": [], "fallback": [], "python": []}
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for run in range(runs):
                app = await WebApp.open(browser, stack.gateway_url)
                await app.sign_up()
                page = app.page
                figures["web"].append(mib / await browser_upload(page, source, 600_000))
                for engine in ("webcrypto", "fallback"):
                    figures[engine].append(mib / await browser_hashing(page, source, chunk_size, engine))
                await page.context.close()

                dbx = await asyncio.to_thread(Dbx, stack, stack.root / f"home-{run}")
                seconds, _, _ = await asyncio.to_thread(dbx, "upload", str(source), "--parallel", "4")
                figures["dbx"].append(mib / seconds)
                figures["python"].append(mib / python_hashing(source, chunk_size))
        finally:
            await browser.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, default=8)
    args = parser.parse_args(argv)
    chunk_size = args.chunk_mib * MIB
    with BenchStack(chunk_size=chunk_size) as stack:
        source = stack.root / "browser-source.bin"
        make_file(source, args.size_mib * MIB)
        figures = asyncio.run(measure(stack, source, args.runs, chunk_size))
    web, dbx = Figure(figures["web"]), Figure(figures["dbx"])
    python = Figure(figures["python"])
    rows = [
        ("upload: web app in headless Chromium", f"{web} MiB/s", f"{web.median / dbx.median:.2f}x dbx"),
        ("upload: dbx", f"{dbx} MiB/s", "1.00x"),
        ("SHA-256 in the browser: WebCrypto (worker)", f"{Figure(figures['webcrypto'])} MiB/s",
         f"{Figure(figures['webcrypto']).median / python.median:.2f}x hashlib"),
        ("SHA-256 in the browser: JS fallback (worker)", f"{Figure(figures['fallback'])} MiB/s",
         f"{Figure(figures['fallback']).median / python.median:.2f}x hashlib"),
        ("SHA-256 in Python: hashlib", f"{python} MiB/s", "1.00x"),
    ]
    print_table(
        f"Web app: {args.size_mib} MiB file, {args.chunk_mib} MiB chunks, 4 in parallel, "
        f"median of {args.runs} runs (min, max)",
        rows,
        ("measure", "figure", "ratio"),
    )


if __name__ == "__main__":
    main()
