"""Of the tests that pass in the first pytest log (`-rA`), how many pass in the second; the others listed with
their status. Usage: python compare.py reference.txt ours.txt"""

from __future__ import annotations

import re
import sys

RESULT = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS) (?:\[\d+\] )?(\S+::\S+)")


def outcomes(path: str) -> dict[str, str]:
    """test id -> its first reported status."""
    found: dict[str, str] = {}
    with open(path, encoding="utf-8") as log:
        for line in log:
            match = RESULT.match(line)
            if match:
                found.setdefault(match.group(2), match.group(1))
    return found


def main() -> None:
    reference, ours = outcomes(sys.argv[1]), outcomes(sys.argv[2])
    passing = {test for test, status in reference.items() if status == "PASSED"}
    both = {test for test in passing if ours.get(test) == "PASSED"}
    print(f"{len(both)} of the {len(passing)} tests that pass for transformers pass for ours")
    for test in sorted(passing - both):
        print(f"  {ours.get(test, 'not run')} {test.split('::', 1)[1]}")


if __name__ == "__main__":
    main()
