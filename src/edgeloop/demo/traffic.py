"""Traffic at one edge: real OIP v2 inference requests at a steady rate, true labels posted
back later as feedback, and a record of every answer (status, version, right or wrong)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import httpx
import numpy as np

from edgeloop.demo.scenario import DRIFTED, MODEL, STEADY, SiteRegime, sample, truth

log = logging.getLogger(__name__)


@dataclass
class Failure:
    """A request that did not get a 200: when, and what came back instead."""

    time: float
    status: int
    error: str


@dataclass
class TrafficStats:
    """What one site's traffic saw; read by the timeline and the summary (under `lock`)."""

    site: str
    sent: int = 0
    ok_ids: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    labels_posted: int = 0
    label_failures: int = 0
    correct: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(phase, version) -> right answers; phase is `before` or `after` the drift."""
    answered: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)
    """version -> wall time of its first answer at this site (the swap, as clients see it)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accuracy(self, phase: str, version: str | None = None) -> tuple[float | None, int]:
        """Share of right answers in `phase` (for one version, or all), and how many."""
        with self.lock:
            keys = [k for k in self.answered if k[0] == phase and version in (None, k[1])]
            total = sum(self.answered[k] for k in keys)
            right = sum(self.correct[k] for k in keys)
        return (right / total if total else None), total

    def versions(self) -> list[str]:
        with self.lock:
            return sorted(self.first_seen, key=lambda v: self.first_seen[v])


class SiteTraffic:
    """A thread sending `rate` requests per second to one edge's server until stopped."""

    def __init__(
        self,
        site: str,
        url: str,
        *,
        rate: float,
        label_delay: float,
        seed: int,
        drift_at: float | None = None,
    ) -> None:
        self.site = site
        self.url = url.rstrip("/")
        self.rate = rate
        self.label_delay = label_delay
        self.drift_at = drift_at
        """Wall time from which this site's machines follow the drifted regime (None: never)."""
        self.phase_at: float | None = drift_at
        """Wall time that splits answers into `before` and `after` (the drift, at any site)."""
        self.drift_started: float | None = None
        self.rng = np.random.default_rng(seed)
        self.stats = TrafficStats(site)
        self.stop = threading.Event()
        self._pending: deque[tuple[float, str, str]] = deque()
        self._thread = threading.Thread(target=self._run, name=f"traffic-{site}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop sending, then post the labels still due (so none is lost)."""
        self.stop.set()
        self._thread.join(30)

    def phase(self, now: float, drift_time: float | None) -> str:
        return "after" if drift_time is not None and now >= drift_time else "before"

    def regime(self, now: float) -> SiteRegime:
        if self.drift_at is not None and now >= self.drift_at:
            if self.drift_started is None:
                self.drift_started = now
            return DRIFTED
        return STEADY

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as http:
            period = 1.0 / self.rate
            next_at = time.monotonic()
            while not self.stop.is_set():
                self._request(http)
                self._post_labels(http, due_only=True)
                next_at += period
                self.stop.wait(max(0.0, next_at - time.monotonic()))
            self._post_labels(http, due_only=False)

    def _request(self, http: httpx.Client) -> None:
        now = time.time()
        x = sample(self.rng, 1, self.regime(now))
        label = str(int(truth(self.rng, x)[0]))
        rid = uuid.uuid4().hex
        body = {
            "id": rid,
            "inputs": [
                {"name": "input", "shape": [1, x.shape[1]], "datatype": "FP32",
                 "data": [float(v) for v in x[0]]}
            ],
        }  # fmt: skip
        stats = self.stats
        try:
            response = http.post(f"{self.url}/v2/models/{MODEL}/infer", json=body)
        except httpx.HTTPError as exc:
            with stats.lock:
                stats.sent += 1
                stats.failures.append(Failure(now, -1, type(exc).__name__))
            return
        with stats.lock:
            stats.sent += 1
            if response.status_code != 200:
                stats.failures.append(Failure(now, response.status_code, response.text[:200]))
                return
            answer = response.json()
            version = str(answer.get("model_version"))
            predicted = next(
                (str(o["data"][0]) for o in answer["outputs"] if o["name"] == "label"), None
            )
            phase = self.phase(now, self.phase_at)
            stats.ok_ids.append(rid)
            stats.answered[(phase, version)] += 1
            stats.correct[(phase, version)] += int(predicted == label)
            stats.first_seen.setdefault(version, now)
        self._pending.append((time.monotonic() + self.label_delay, rid, label))

    def _post_labels(self, http: httpx.Client, *, due_only: bool) -> None:
        now = time.monotonic()
        due = []
        while self._pending and (not due_only or self._pending[0][0] <= now):
            _, rid, label = self._pending.popleft()
            due.append({"request_id": rid, "label": label})
        if not due:
            return
        try:
            response = http.post(f"{self.url}/v2/models/{MODEL}/feedback", json={"labels": due})
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        with self.stats.lock:
            if ok:
                self.stats.labels_posted += len(due)
            else:
                self.stats.label_failures += len(due)


def wait_until_serving(url: str, stop: threading.Event, timeout: float) -> str | None:
    """Wait until the server at `url` serves the demo model; its version, or None on timeout."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline and not stop.is_set():
            try:
                response = http.get(f"{url}/v2/models/{MODEL}")
                if response.status_code == 200:
                    versions = response.json().get("versions") or []
                    return str(versions[-1]) if versions else "?"
            except httpx.HTTPError:
                pass
            stop.wait(0.2)
    return None


def by_phase(stats: TrafficStats) -> dict[str, dict[str, tuple[float | None, int]]]:
    """phase -> version -> (accuracy, answers), for the summary."""
    out: dict[str, dict[str, tuple[float | None, int]]] = defaultdict(dict)
    with stats.lock:
        keys = list(stats.answered)
    for phase, version in keys:
        out[phase][version] = stats.accuracy(phase, version)
    return dict(out)
