"""`huggingface_hub.InferenceClient(model=URL).summarization(text)` against a local service, in a process of its
own that refuses any connection or name lookup beyond this machine (a Python audit hook).

huggingface_hub's offline mode (HF_HUB_OFFLINE=1, set for every test) blocks every request its client sends, even
to a local URL: the script records that, then lifts the flag in its own process only.
"""

from __future__ import annotations

import subprocess
import sys

CLIENT_SCRIPT = r"""
import ipaddress, json, sys

LOCAL = ("127.0.0.1", "localhost", "::1")

def loopback_only(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        if not ipaddress.ip_address(args[1][0]).is_loopback:
            raise ConnectionRefusedError(f"the test allows loopback only, not {args[1]}")
    elif event == "socket.getaddrinfo" and args[0] not in LOCAL and args[0] not in [h.encode() for h in LOCAL]:
        raise ConnectionRefusedError(f"the test allows no name lookup of {args[0]!r}")

sys.addaudithook(loopback_only)
from huggingface_hub import InferenceClient, constants
from huggingface_hub.errors import OfflineModeIsEnabled

url, text, key = sys.argv[1], sys.argv[2], sys.argv[3] or None
client = InferenceClient(model=url, api_key=key)
try:
    client.summarization(text)
    offline = "sent"
except OfflineModeIsEnabled:
    offline = "refused"
constants.HF_HUB_OFFLINE = False
plain = client.summarization(text)
chosen = client.summarization(text, generate_parameters={"num_beams": 2, "max_length": 9})
print(json.dumps({"offline": offline, "plain": plain.summary_text, "plain_tokens": plain.input_tokens,
                  "chosen": chosen.summary_text}))
"""


def run_inference_client(url: str, text: str, *, api_key: str = "") -> subprocess.CompletedProcess:
    """The script's run: its stdout is a JSON object {"offline": "refused"|"sent", "plain": summary,
    "plain_tokens": input tokens, "chosen": the summary with num_beams=2, max_length=9}."""
    return subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, url, text, api_key], capture_output=True,
                          text=True, timeout=120)
