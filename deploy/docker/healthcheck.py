"""Docker HEALTHCHECK for the eventpipe image: one image, several roles.

Docker (unlike Kubernetes, which uses the httpGet probes in deploy/k8s/) has a
single HEALTHCHECK per image, so this checks whichever role is running: healthy
when the collector's /healthz or the processor's /metrics answers 200 on
localhost. Standard library only; the slim base image has no curl.
"""

import os
import sys
import urllib.request


def main() -> int:
    urls = (
        f"http://127.0.0.1:{os.environ.get('EVENTPIPE_COLLECTOR_PORT', '8080')}/healthz",
        f"http://127.0.0.1:{os.environ.get('EVENTPIPE_PROCESSOR_WEB_PORT', '6066')}/metrics",
    )
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - fixed localhost URLs
                if response.status == 200:
                    return 0
        except OSError:
            continue
    print("eventpipe-healthcheck: neither the collector nor the processor answers", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
