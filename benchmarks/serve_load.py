"""Load on `bigbird-pegasus serve`: concurrent clients sending long documents, with dynamic batching against one
request at a time (`--max-batch-size 1`), each run in a fresh server process, the two alternating.

Reported per run: documents/s, latency p50/p95/p99, the batch sizes the server formed (from its /metrics), errors,
and the server's peak memory (VmHWM). Prints a markdown table and writes JSON to `--out`. Nothing is asserted.

    python benchmarks/serve_load.py                      # large config, 1024-token documents, concurrency 1 4 16
    python benchmarks/serve_load.py --concurrency 16     # one part (runs of ~2 minutes each on 2 cores)
    python benchmarks/serve_load.py --tiny               # smoke run on a tiny config

Needs the test and bench extras (`pip install -e ".[test,bench]"`): the random weights are saved by the reference
(`common.ensure_checkpoint`) and a SentencePiece tokenizer is trained for them on generated English.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(Path(__file__).resolve().parent)]
from common import checkpoint_folder, ensure_checkpoint, save_json  # noqa: E402

MODES = {"batched": None, "one at a time": 1}  # --max-batch-size: the run's own (None: --max-batch-size) or 1
TOKENIZER_PIECES = {"large": 8000, "tiny": 300}  # under each config's vocabulary (the tiny preset has 500 ids)
START_TIMEOUT = 600  # seconds to load the large weights on a busy machine
PAGE_TOKENS = 1024  # a document of --tokens is built from paragraphs until it holds about this many per "page"


def main() -> None:
    args = parse_args()
    size = "tiny" if args.tiny else "large"
    model = served_checkpoint(Path(ensure_checkpoint(tiny=args.tiny)), size=size)
    documents = make_documents(model, count=max(args.requests or 0, 2 * max(args.concurrency), 8),
                               tokens=args.tokens)
    runs = []
    for concurrency in args.concurrency:
        requests = args.requests or max(2 * concurrency, 6)
        for mode, batch_size in MODES.items():
            run = measure(model, documents[:requests], concurrency=concurrency, mode=mode,
                          max_batch_size=batch_size or args.max_batch_size, args=args)
            runs.append(run)
            print(f"{mode:>13}, concurrency {concurrency:>2}: {run['documents_per_second']:.3f} documents/s, "
                  f"p50 {run['latency_p50']:.1f} s, errors {run['errors']}, peak {run['peak_rss_gib']:.2f} GiB",
                  flush=True)
    save_json(args.out, {"size": size, "tokens": args.tokens, "new_tokens": args.new_tokens,
                         "num_beams": args.num_beams, "max_batch_size": args.max_batch_size,
                         "max_wait_ms": args.max_wait_ms, "runs": runs})
    print(table(runs, size=size, args=args))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny config (a smoke run)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="clients at once")
    parser.add_argument("--requests", type=int, help="documents per run, one per request (default: 2 per client, "
                                                     "at least 6)")
    parser.add_argument("--tokens", type=int, default=1024, help="tokens per document, about (default 1024)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens per summary, exactly (default 32)")
    parser.add_argument("--num-beams", type=int, default=5, help="beam width (default 5, the published setting)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="the batched runs' --max-batch-size")
    parser.add_argument("--max-wait-ms", type=float, default=50, help="the batched runs' --max-wait-ms")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="the server's CPU threads")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "serve_load.json"), help="JSON results")
    return parser.parse_args()


def served_checkpoint(weights: Path, *, size: str) -> Path:
    """A folder with the random weights (linked) and a SentencePiece tokenizer trained for them."""
    from helpers.spm import train_pegasus_spm

    folder = Path(checkpoint_folder(size == "tiny") + "-served")
    if not (folder / "spiece.model").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for item in weights.iterdir():
            if not (folder / item.name).exists():
                (folder / item.name).symlink_to(item)
        train_pegasus_spm(folder, vocab_size=TOKENIZER_PIECES[size], paragraphs=2000)
    return folder


def make_documents(model: Path, *, count: int, tokens: int) -> list[str]:
    """`count` different documents of 75-100% of `tokens` tokens each (generated English, in paragraphs)."""
    from bigbird_pegasus import PegasusTokenizer
    from helpers.spm import english_paragraphs

    tokenizer = PegasusTokenizer.from_pretrained(model)
    rng = random.Random(0)
    documents = []
    for index in range(count):
        target = int(tokens * rng.uniform(0.75, 1.0))
        paragraphs = english_paragraphs(max(8, target // 40), seed=1000 + index)
        while len(tokenizer("\n\n".join(paragraphs))["input_ids"]) > target and len(paragraphs) > 1:
            paragraphs.pop()
        documents.append("\n\n".join(paragraphs))
    return documents


def measure(model: Path, documents: list[str], *, concurrency: int, mode: str, max_batch_size: int,
            args: argparse.Namespace) -> dict:
    """One run: a fresh server, a warm-up request, then `documents` sent by `concurrency` clients."""
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "server.log"
        server, url = start(model, log=log, max_batch_size=max_batch_size, args=args)
        try:
            with httpx.Client(base_url=url, timeout=None, limits=httpx.Limits(max_connections=concurrency)) as client:
                client.post("/", json={"inputs": documents[0]})  # first-call costs outside the measurement
                before = metrics(url)
                latencies, errors = [], []
                started = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    for seconds, error in pool.map(lambda text: timed(client, text), documents):
                        (errors.append(error) if error else latencies.append(seconds))
                wall = time.perf_counter() - started
            after = metrics(url)
            peak = peak_rss_gib(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            exit_status = server.wait(timeout=600)
    return {"mode": mode, "concurrency": concurrency, "max_batch_size": max_batch_size, "requests": len(documents),
            "wall_seconds": round(wall, 2), "documents_per_second": len(latencies) / wall,
            **percentiles(latencies), "errors": len(errors), "error_examples": errors[:3],
            "batches": batch_sizes(before, after), "peak_rss_gib": peak, "server_exit_status": exit_status}


def start(model: Path, *, log: Path, max_batch_size: int, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    length = args.new_tokens + 1  # the start token counts in --max-length
    command = [sys.executable, "-m", "bigbird_pegasus", "serve", "--model", str(model), "--port", "0",
               "--threads", str(args.threads), "--max-batch-size", str(max_batch_size),
               "--max-wait-ms", str(args.max_wait_ms), "--max-queue", "1000", "--request-timeout", "86400",
               "--num-beams", str(args.num_beams), "--max-length", str(length), "--min-length", str(length),
               "--log-level", "warning"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "src"))
    with open(log, "wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and server.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if " on http://" in line:
                url = line.split(" on ")[1].split()[0]
                return server, url
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start:\n{log.read_text(errors='replace')}")


def timed(client: httpx.Client, text: str) -> tuple[float, str | None]:
    """Seconds to the answer, and the error (None when it is 200); the clients share one connection pool, so that
    no request pays for setting up a client."""
    started = time.perf_counter()
    try:
        response = client.post("/", json={"inputs": text})
    except httpx.HTTPError as error:
        return time.perf_counter() - started, f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - started
    return seconds, None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"


def metrics(url: str) -> dict[str, float]:
    from helpers.server import parse_metrics

    return parse_metrics(httpx.get(f"{url}/metrics", timeout=60).text)


def batch_sizes(before: dict[str, float], after: dict[str, float]) -> dict:
    """How many batches of each size the run formed (from the histogram's cumulative buckets)."""
    prefix = 'bigbird_pegasus_batch_documents_bucket{le="'
    cumulative = {float(name[len(prefix):-2]): after[name] - before.get(name, 0)
                  for name in after if name.startswith(prefix) and "+Inf" not in name}
    counts, below = {}, 0.0
    for bound in sorted(cumulative):
        if cumulative[bound] - below:
            counts[f"<={bound:g}"] = int(cumulative[bound] - below)
        below = cumulative[bound]
    batches = after["bigbird_pegasus_batch_documents_count"] - before["bigbird_pegasus_batch_documents_count"]
    documents = after["bigbird_pegasus_batch_documents_sum"] - before["bigbird_pegasus_batch_documents_sum"]
    return {"count": int(batches), "mean": documents / batches if batches else 0.0, "sizes": counts}


def percentiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        only = latencies[0] if latencies else float("nan")
        return {"latency_p50": only, "latency_p95": only, "latency_p99": only}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"latency_p50": statistics.median(latencies), "latency_p95": cuts[94], "latency_p99": cuts[98]}


def peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2 ** 20
    return float("nan")


def table(runs: list[dict], *, size: str, args: argparse.Namespace) -> str:
    lines = [f"{size} config, documents of ~{args.tokens} tokens, summaries of {args.new_tokens} tokens, beam "
             f"{args.num_beams}, {args.threads} threads; batched: --max-batch-size {args.max_batch_size} "
             f"--max-wait-ms {args.max_wait_ms:g}", "",
             "| clients | mode | documents/s | vs one at a time | p50 s | p95 s | p99 s | batches (mean size) "
             "| errors | peak GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    single = {run["concurrency"]: run for run in runs if run["mode"] == "one at a time"}
    for run in runs:
        baseline = single.get(run["concurrency"])
        gain = run["documents_per_second"] / baseline["documents_per_second"] if baseline else float("nan")
        lines.append(f"| {run['concurrency']} | {run['mode']} | {run['documents_per_second']:.3f} | {gain:.2f}x "
                     f"| {run['latency_p50']:.1f} | {run['latency_p95']:.1f} | {run['latency_p99']:.1f} "
                     f"| {run['batches']['count']} ({run['batches']['mean']:.1f}) | {run['errors']} "
                     f"| {run['peak_rss_gib']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
