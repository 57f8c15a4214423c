"""Whether a NATS server has JetStream on (broker endpoints need it): `.ci/run` and
scripts/run_tests.py ask before the suite runs. A port that answers is not enough: a
`nats-server` started without `-js` takes connections and refuses every stream call.

    python scripts/check_jetstream.py [nats://127.0.0.1:4222]    # exit 1 and why, if not
"""

from __future__ import annotations

import asyncio
import sys

DEFAULT_URL = "nats://127.0.0.1:4222"


async def _problem(url: str, timeout: float) -> str | None:
    import nats
    from nats.errors import Error as NatsError

    async def quiet(exc: Exception) -> None:  # the answer says what went wrong
        pass

    try:
        nc = await nats.connect(
            url,
            connect_timeout=max(1, round(timeout)),
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would mean "forever" while connecting
            reconnect_time_wait=0,
            error_cb=quiet,
        )
    except (TimeoutError, NatsError, OSError) as exc:
        return f"NATS does not answer at {url} ({type(exc).__name__})"
    try:
        # `$JS.API.INFO`: answered by JetStream, else "no responders" (503).
        await nc.jetstream(timeout=timeout).account_info()
    except (TimeoutError, NatsError, OSError) as exc:
        return (
            f"NATS at {url} answers but JetStream is not enabled ({type(exc).__name__}): "
            "restart nats-server with -js (and -sd <store directory>)"
        )
    finally:
        await nc.close()
    return None


def jetstream_problem(url: str = DEFAULT_URL, timeout: float = 3) -> str | None:
    """None when the server at `url` has JetStream; else what is wrong, in a sentence."""
    return asyncio.run(_problem(url, timeout))


if __name__ == "__main__":
    problem = jetstream_problem(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL)
    if problem:
        print(f"check_jetstream: {problem}", file=sys.stderr)
        sys.exit(1)
    print("check_jetstream: JetStream is enabled")
