"""Fleet control plane benchmark: simulated agents over real HTTP to a real control-plane
process (`edgeloop fleet serve`, uvicorn, pinned to CPU 0; load on CPU 1).

For each database (SQLite, PostgreSQL) and fleet size (100, 1,000, 5,000 sites by default):
  * throughput and latency of writes, measured with wrk (32 connections, a Lua script that
    cycles through every site's own agent token): heartbeats (buffered, batched) and status
    reports (one transaction each, audited), in rounds alternating with the reference, the
    same server's raw request rate on /healthz (A B A B ...); medians and the median ratio;
  * a rollout to every site in three waves (5%, 25%, 100%, hold time 0) driven by simulated
    agents (asyncio + aiohttp, one process) that long-poll their desired state with ETags,
    apply it and heartbeat: seconds of control-plane time until the rollout completes, and
    that every site applied each version exactly once.

    .venv/bin/python benchmarks/fleet.py [--sizes 100,1000,5000] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
API = "/api/v1"
TASKSET = shutil.which("taskset")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if TASKSET and (os.cpu_count() or 1) > 1 else cmd


class ControlPlaneProcess:
    """`edgeloop fleet serve` in a subprocess on CPU 0."""

    def __init__(self, db_url: str, state_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = pinned(
            0,
            [
                str(ROOT / ".venv" / "bin" / "edgeloop"),
                "fleet",
                "serve",
                "--state-dir",
                str(state_dir),
                "--db",
                db_url,
                "--port",
                str(self.port),
                "--tick",
                "0.2",
            ],
        )
        env = {**os.environ, "EDGELOOP_LOG_LEVEL": "WARNING"}
        self.log = open(state_dir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((state_dir / "server.log").read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        self.admin = (state_dir / "admin.token").read_text().strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- setup ---------------------------------------------------------------------------------


def join_sites(url: str, admin: str, n: int) -> list[tuple[str, str]]:
    """Register n sites through join tokens, as agents do; returns (site, agent token)."""

    async def run() -> list[tuple[str, str]]:
        headers = {"Authorization": f"Bearer {admin}"}
        sem = asyncio.Semaphore(16)
        async with aiohttp.ClientSession(url) as http:

            async def one(i: int) -> tuple[str, str]:
                name = f"site-{i:05d}"
                async with sem:
                    async with http.post(
                        f"{API}/join-tokens",
                        headers=headers,
                        json={"site": name, "labels": {"fleet": "bench"}},
                    ) as r:
                        secret = (await r.json())["join_token"]
                    async with http.post(
                        f"{API}/join", headers={"Authorization": f"Bearer {secret}"}
                    ) as r:
                        return name, (await r.json())["token"]

            return list(await asyncio.gather(*(one(i) for i in range(n))))

    return asyncio.run(run())


# -- throughput with wrk -------------------------------------------------------------------

LUA = """
local agents = {%s}
local i = 0
local kind = "%s"
request = function()
  i = (i %% #agents) + 1
  local a = agents[i]
  local headers = {["Authorization"] = "Bearer " .. a[2], ["Content-Type"] = "application/json"}
  if kind == "heartbeat" then
    return wrk.format("POST", "/api/v1/sites/" .. a[1] .. "/heartbeat", headers,
      '{"loaded": {"m": "1"}, "healthy": true, "error_rate": 0.0, "p99_ms": 9.0}')
  end
  return wrk.format("POST", "/api/v1/sites/" .. a[1] .. "/reports", headers,
    '{"model": "m", "version": "1", "outcome": "applied"}')
end
"""

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: float, script: Path | None, path: str = "/") -> dict[str, float]:
    cmd = pinned(1, ["wrk", "-t1", "-c32", f"-d{seconds:g}s", "--latency"])
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url + path], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {}
    for q in ("50", "99"):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out)
        lat[q] = float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")
    return {
        "rate": rate,
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "errors": float(errors.group(1)) if errors else 0.0,
    }


async def heartbeat_once(url: str, sites: list[tuple[str, str]]) -> None:
    sem = asyncio.Semaphore(32)
    body = {"loaded": {"m": "1"}, "healthy": True, "error_rate": 0.0, "p99_ms": 9.0}
    async with aiohttp.ClientSession(url) as http:

        async def one(site: str, token: str) -> None:
            async with (
                sem,
                http.post(
                    f"{API}/sites/{site}/heartbeat",
                    headers={"Authorization": f"Bearer {token}"},
                    json=body,
                ) as r,
            ):
                r.raise_for_status()

        await asyncio.gather(*(one(s, t) for s, t in sites))


def throughput(
    url: str, sites: list[tuple[str, str]], state: Path, rounds: int, seconds: float
) -> dict[str, Any]:
    agents = ",".join(f'{{"{s}","{t}"}}' for s, t in sites)
    scripts = {}
    for kind in ("heartbeat", "report"):
        scripts[kind] = state / f"{kind}.lua"
        scripts[kind].write_text(LUA % (agents, kind))
    # Warm up: one heartbeat from every site (its token and desired-state ETag then sit in
    # the control plane's memory, as they do for a fleet that heartbeats every few seconds),
    # then wrk's connections.
    asyncio.run(heartbeat_once(url, sites))
    wrk(url, 2, scripts["heartbeat"])
    out: dict[str, Any] = {}
    for kind in ("heartbeat", "report"):
        ref, got, ratios = [], [], []
        for _ in range(rounds):  # A B A B: reference, then edgeloop, each round
            a = wrk(url, seconds, None, "/healthz")
            b = wrk(url, seconds, scripts[kind])
            if b["errors"]:
                raise RuntimeError(f"{kind}: {b['errors']:.0f} non-2xx responses")
            ref.append(a)
            got.append(b)
            ratios.append(b["rate"] / a["rate"])
        out[kind] = {
            "per_s": statistics.median(r["rate"] for r in got),
            "per_s_rounds": [r["rate"] for r in got],
            "p50_ms": statistics.median(r["p50_ms"] for r in got),
            "p99_ms": statistics.median(r["p99_ms"] for r in got),
            "healthz_per_s": statistics.median(r["rate"] for r in ref),
            "vs_healthz": statistics.median(ratios),
            "vs_healthz_rounds": ratios,
        }
    return out


# -- rollout with simulated agents ---------------------------------------------------------


class Agent:
    """One simulated site: long-polls its desired state, applies it, heartbeats.

    Like the real agent, it never gives up: a failed call is counted in `errors` (by kind)
    and retried after a pause. An agent that stopped on its first failed heartbeat would
    leave its site on the old version forever, and the rollout waiting on it.
    """

    def __init__(self, name: str, token: str, errors: collections.Counter[str]) -> None:
        self.name = name
        self.headers = {"Authorization": f"Bearer {token}"}
        self.loaded: dict[str, str] = {}
        self.etag: str | None = None
        self.applied: list[str] = []
        self.errors = errors

    async def heartbeat(self, http: aiohttp.ClientSession) -> None:
        async with http.post(
            f"{API}/sites/{self.name}/heartbeat",
            headers=self.headers,
            json={"loaded": self.loaded, "healthy": True, "error_rate": 0.0, "p99_ms": 9.0},
        ) as response:
            response.raise_for_status()

    async def follow(self, http: aiohttp.ClientSession) -> None:
        while True:
            headers = dict(self.headers)
            if self.etag:
                headers["If-None-Match"] = self.etag
            try:
                async with http.get(
                    f"{API}/sites/{self.name}/desired", params={"wait": "25"}, headers=headers
                ) as response:
                    if response.status == 304:
                        continue
                    if response.status != 200:
                        self.errors[f"desired: HTTP {response.status}"] += 1
                        await asyncio.sleep(0.5)
                        continue
                    body = await response.json()
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.errors[f"desired: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            self.etag = body["etag"]
            wanted = {m["model"]: m["version"] for m in body["document"]["models"]}
            if wanted != self.loaded:
                self.loaded = wanted
                self.applied.extend(wanted.values())
                await self.report(http)

    async def report(self, http: aiohttp.ClientSession) -> None:
        """Heartbeat after applying, until it is delivered."""
        while True:
            try:
                await self.heartbeat(http)
                return
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = getattr(exc, "status", None)
                self.errors[f"heartbeat: {status or type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)


async def rollout(
    url: str, admin: str, sites: list[tuple[str, str]], repeats: int = 1, limit_s: float = 300
) -> dict[str, Any]:
    """`repeats` times: deploy version 2k+1 to every site at once, then roll out 2k+2 in three
    waves; every agent must apply each version exactly once, in order."""
    errors: collections.Counter[str] = collections.Counter()
    agents = [Agent(s, t, errors) for s, t in sites]
    headers = {"Authorization": f"Bearer {admin}"}
    connector = aiohttp.TCPConnector(limit=0)
    # Long-polls wait 25 s; a deployment over 5,000 sites may take a while on a busy machine.
    timeout = aiohttp.ClientTimeout(total=300)
    detail: dict[str, Any] = {}
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        followers = [asyncio.create_task(a.follow(http)) for a in agents]
        deploys: list[float] = []
        converges: list[float] = []
        state = "not started"
        try:
            while sum(a.etag is not None for a in agents) < len(agents):
                await asyncio.sleep(0.05)
            for k in range(repeats):
                old, new = str(2 * k + 1), str(2 * k + 2)
                start = time.perf_counter()
                async with http.put(
                    f"{API}/deployments/bench",
                    headers=headers,
                    json={"model": "m", "version": old, "selector": "fleet=bench"},
                ) as r:
                    r.raise_for_status()
                while sum(a.loaded.get("m") == old for a in agents) < len(agents):
                    await asyncio.sleep(0.05)
                deploys.append(time.perf_counter() - start)

                start = time.perf_counter()
                async with http.post(
                    f"{API}/rollouts",
                    headers=headers,
                    json={
                        "deployment": "bench",
                        "version": new,
                        "waves": "5,25,100",
                        "gate": {"min_healthy_seconds": 0, "max_error_rate": 0.5},
                    },
                ) as r:
                    r.raise_for_status()
                    rollout_id = (await r.json())["id"]
                state = "running"
                while state == "running" and time.perf_counter() - start < limit_s:
                    # The summary list, not per-site detail: watching must not load the server.
                    await asyncio.sleep(0.1)
                    try:
                        async with http.get(f"{API}/rollouts", headers=headers) as r:
                            rows = await r.json()
                        state = next(x for x in rows if x["id"] == rollout_id)["state"]
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        errors[f"watch: {type(exc).__name__}"] += 1
                converges.append(time.perf_counter() - start)
                if state != "completed":
                    detail = await _stuck(http, headers, rollout_id, agents)
                    break
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    versions = [str(v) for v in range(1, 2 * len(converges) + 1)]
    converge_s = statistics.median(converges)
    return {
        "state": state,
        "deploy_all_s": statistics.median(deploys),
        "rollout_3_waves_s": converge_s,
        "rollout_rounds_s": converges,
        "sites_converged_per_s": len(agents) / converge_s,
        "sites_on_new_version": sum(a.loaded.get("m") == versions[-1] for a in agents),
        "each_version_applied_once": all(a.applied == versions for a in agents),
        "agent_errors": dict(errors),
        **({"stuck": detail} if detail else {}),
    }


async def _stuck(
    http: aiohttp.ClientSession, headers: dict[str, str], rollout_id: str, agents: list[Agent]
) -> dict[str, Any]:
    """Why a rollout did not complete: the control plane's view against the agents' view."""
    async with http.get(f"{API}/rollouts/{rollout_id}", headers=headers) as r:
        view = await r.json()
    wave = next((w for w in view["waves"] if w["state"] != "passed"), None)
    by_name = {a.name: a for a in agents}
    lagging = [s for s in (wave or {}).get("sites", []) if not s["on_target"]]
    return {
        "reason": view.get("reason"),
        "wave": wave and wave["index"],
        "sites_not_on_target": len(lagging),
        "examples": [
            {**s, "agent_loaded": by_name[s["site"]].loaded.get("m")} for s in lagging[:5]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Fleet control plane benchmark.")
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--rollouts", type=int, default=3, help="rollouts per cell (median and spread)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: run `scripts/system-deps.sh test` (apt-get install wrk)")
        return 2
    results: list[dict[str, Any]] = []
    pg = None
    try:
        for db in args.db.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                state = Path(tempfile.mkdtemp(prefix="edgeloop-fleet-bench-"))
                if db == "postgres":
                    if pg is None:
                        from edgeloop.testing.postgres import PostgresServer

                        pg = PostgresServer().start()
                    db_url = pg.create_database()
                else:
                    db_url = f"sqlite:///{state / 'fleet.db'}"
                server = ControlPlaneProcess(db_url, state)
                row: dict[str, Any] = {"db": db, "sites": n, "load_before": os.getloadavg()[0]}
                try:
                    start = time.perf_counter()
                    sites = join_sites(server.url, server.admin, n)
                    row["join_s"] = time.perf_counter() - start
                    row.update(throughput(server.url, sites, state, args.rounds, args.seconds))
                    row.update(asyncio.run(rollout(server.url, server.admin, sites, args.rollouts)))
                finally:
                    row["load_after"] = os.getloadavg()[0]
                    server.stop()
                    if row.get("state") != "completed":  # keep the server's story
                        RESULTS.mkdir(parents=True, exist_ok=True)
                        kept = RESULTS / f"fleet-server-{db}-{n}.log"
                        shutil.copyfile(state / "server.log", kept)
                        print(f"server log kept in {kept}", flush=True)
                    shutil.rmtree(state, ignore_errors=True)
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if pg is not None:
            pg.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "command": "python benchmarks/fleet.py " + " ".join(sys.argv[1:]),
    }
    (RESULTS / "fleet.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "| db | sites | heartbeats/s (vs /healthz) | heartbeat p50 / p99 ms "
        "| reports/s (vs /healthz) | report p50 / p99 ms | rollout, 3 waves "
        "| deploy to all | applied once | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hb, rp = r["heartbeat"], r["report"]
        lo, hi = min(hb["per_s_rounds"]), max(hb["per_s_rounds"])
        ro = r["rollout_rounds_s"]
        lines.append(
            f"| {r['db']} | {r['sites']} | {hb['per_s']:.0f} ({hb['vs_healthz']:.2f}); "
            f"{lo:.0f}-{hi:.0f} | {hb['p50_ms']:.1f} / {hb['p99_ms']:.1f} | {rp['per_s']:.0f} "
            f"({rp['vs_healthz']:.2f}) | {rp['p50_ms']:.1f} / {rp['p99_ms']:.1f} | "
            f"{r['rollout_3_waves_s']:.1f} s ({min(ro):.1f}-{max(ro):.1f}, {r['state']}) | "
            f"{r['deploy_all_s']:.1f} s | {r['each_version_applied_once']} | "
            f"{r['load_before']:.1f}-{r['load_after']:.1f} |"
        )
    table = "\n".join(lines)
    (RESULTS / "fleet.md").write_text(table + "\n")
    print(table)
    ok = all(
        r["state"] == "completed"
        and r["rollout_3_waves_s"] <= 30
        and r["each_version_applied_once"]
        for r in results
        if r["sites"] <= 1000
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
