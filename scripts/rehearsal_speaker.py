"""A 440 Hz aiortc speaker on a space's stage for N seconds (used by scripts/rehearse)."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx

from http_helpers import speak_over_http
from tones import ToneTrack
from townhall.stage.ice import use_host_addresses


async def main(base: str, space: str, token: str, seconds: float) -> None:
    use_host_addresses(["127.0.0.1"])
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        speaker = await speak_over_http(http, space, headers, ToneTrack(440.0))
        await asyncio.sleep(seconds)
        await speaker.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
