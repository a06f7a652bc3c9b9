"""Files that only Label Studio has: images people upload through its UI land in its media folder and are
served at ``/data/upload/<project>/<file>`` to signed-in users. The ML backend (pre-labels) and the
training manager (a job's images) fetch them with Label Studio's token; the token goes to Label Studio's
own URL only."""
from __future__ import annotations

from urllib.parse import urlparse

import requests

UPLOAD_PREFIX = "/data/upload/"


def fetch(base_url: str, url: str, token: str | None, timeout: float) -> bytes:
    """The bytes behind a task's image ``url`` (absolute, or a path on Label Studio at ``base_url``).
    Raises requests.RequestException (HTTP errors included)."""
    base = base_url.rstrip("/")
    absolute = url if urlparse(url).scheme in ("http", "https") else base + "/" + url.lstrip("/")
    headers = {"Authorization": f"Token {token}"} if token and absolute.startswith(base + "/") else {}
    answer = requests.get(absolute, headers=headers, timeout=timeout)
    answer.raise_for_status()
    return answer.content
