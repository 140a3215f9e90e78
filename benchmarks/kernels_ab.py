"""Whole decoding steps through the C kernels of a git revision against the working tree's, alternating.

    python benchmarks/kernels_ab.py                          # HEAD's kernels against the working tree's, fp32
    python benchmarks/kernels_ab.py --docs 4 --rounds 6      # 4 documents decoded together
    python benchmarks/kernels_ab.py --revision HEAD~3 --int8 # another revision; quantize_int8's decoder
    python benchmarks/kernels_ab.py --tiny                   # a smoke run on the tiny config

For a change to the kernels (`src/bigbird_pegasus/kernels/*.c`): the revision's sources are compiled as the
package compiles its own (`build.FLAGS`, `$CC`), both libraries are loaded into one process, and `generate` runs
over the same random encoder states (`--docs` documents of `--source` positions, beam 5, length penalty 0.8,
exactly `--new-tokens` new tokens) with one library and then the other, `--rounds` times, the order swapped every
round. Reported: each run's median decoding step (the first, which also projects the cross-attention keys and
values, left out), the medians and fastest over the rounds, their ratio, and whether both libraries generated the
same tokens. Nothing is asserted: this measures.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkpoint_folder, decoding_steps_timed, ensure_checkpoint  # noqa: E402

import torch  # noqa: E402

import bigbird_pegasus  # noqa: E402
from bigbird_pegasus.kernels import build, library  # noqa: E402

KERNELS = "src/bigbird_pegasus/kernels"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revision", default="HEAD", help="the git revision whose kernels are compared")
    parser.add_argument("--docs", type=int, default=1, help="documents decoded together")
    parser.add_argument("--rounds", type=int, default=4, help="generate calls per library, alternating")
    parser.add_argument("--new-tokens", type=int, default=12, help="new tokens per generate call (exactly)")
    parser.add_argument("--source", type=int, default=4096, help="positions of each document's encoder states")
    parser.add_argument("--int8", action="store_true", help="the decoder after quantize_int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="the tiny config and a 256-position source")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    libraries = {args.revision: build_revision(args.revision), "working tree": library.loaded()}
    if libraries["working tree"] is None:
        sys.exit(f"the working tree's kernels are unavailable: {library.unavailable_reason()}")
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(
        ensure_checkpoint(checkpoint_folder(args.tiny), tiny=args.tiny)).eval()
    if args.int8:
        bigbird_pegasus.quantize_int8(model)
    source = 256 if args.tiny else args.source
    states = torch.randn(args.docs, source, model.config.d_model,
                         generator=torch.Generator().manual_seed(0))  # (docs, source, d_model)

    medians = {name: [] for name in libraries}
    tokens = {}
    for round_index in range(args.rounds):
        order = list(libraries) if round_index % 2 == 0 else list(libraries)[::-1]
        for name in order:
            library.loaded = lambda chosen=libraries[name]: chosen  # what every kernel call goes through
            with decoding_steps_timed() as steps, torch.inference_mode():
                tokens[name] = model.generate(encoder_outputs=(states,), num_beams=5, length_penalty=0.8,
                                              max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
            medians[name].append(statistics.median(end - start for start, end in steps[1:]))
    report(args, medians, same_tokens=torch.equal(*tokens.values()))


def build_revision(revision: str) -> ctypes.CDLL:
    """The kernels of `revision`, compiled as the package compiles its own, loaded, their signatures declared."""
    folder = Path(tempfile.mkdtemp(prefix="kernels-ab-"))
    for name in (*build.SOURCES, *build.HEADERS):
        shown = subprocess.run(["git", "show", f"{revision}:{KERNELS}/{name}"], cwd=REPO, capture_output=True)
        if shown.returncode != 0:
            sys.exit(f"git show {revision}:{KERNELS}/{name} failed: {shown.stderr.decode().strip()}")
        (folder / name).write_bytes(shown.stdout)
    compiler = os.environ.get("CC") or "cc"
    output = folder / "kernels.so"
    command = [compiler, *build.FLAGS, *(str(folder / name) for name in build.SOURCES), "-o", str(output)]
    compiled = subprocess.run(command, capture_output=True, text=True)
    if compiled.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {compiled.stderr.strip()[:2000]}")
    loaded = ctypes.CDLL(str(output))
    library.declare(loaded)
    return loaded


def report(args: argparse.Namespace, medians: dict[str, list[float]], *, same_tokens: bool) -> None:
    print(f"{args.docs} document(s), {'int8' if args.int8 else 'fp32'}, {args.new_tokens} new tokens, "
          f"{args.rounds} rounds; the same tokens: {same_tokens}")
    summary = {}
    for name, values in medians.items():
        summary[name] = statistics.median(values)
        rounds = ", ".join(f"{value * 1e3:.1f}" for value in values)
        print(f"  {name:>14}: median step {summary[name] * 1e3:.1f} ms, fastest {min(values) * 1e3:.1f} "
              f"(rounds: {rounds})")
    old, new = summary.values()
    print(f"  {args.revision} / working tree: {old / new:.3f}x")


if __name__ == "__main__":
    main()
