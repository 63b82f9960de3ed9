"""The edge agent: long-polls its signed desired state, reconciles the local server toward it,
runs its runbooks, and reports. Every round works offline from what is on disk."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from edgeloop.errors import (
    EdgeloopError,
    FleetError,
    PackageError,
    ServingError,
    SignatureInvalid,
)
from edgeloop.fleet.agent.config import AgentConfig
from edgeloop.fleet.agent.desired import Desired, StaleDesired, accept, read_local_copy
from edgeloop.fleet.agent.link import AgentRefused, ControlLink
from edgeloop.fleet.agent.packages import LocalPackages, PackageMissing
from edgeloop.fleet.agent.runbooks import Verdict, alerts, judge_probation, quantile, rate
from edgeloop.fleet.agent.serving import (
    Sample,
    ServerProcess,
    ServerUnreachable,
    ServingLink,
    is_error_status,
    total,
    wait_live,
)
from edgeloop.fleet.agent.state import AgentState, Probation, StateFile
from edgeloop.fleet.auth import read_secret_file, write_secret_file
from edgeloop.fleet.client import ControlPlaneUnreachable
from edgeloop.model.desired import Action, ActionKind, is_older, reconcile
from edgeloop.model.events import Event

log = logging.getLogger(__name__)


class Agent:
    """One site's agent. `step()` is one reconcile round; `run(stop)` loops until `stop`."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        control_http: httpx.Client | None = None,
        serving_http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = StateFile(config.state_dir / "agent-state.json")
        self.state: AgentState = self.state_file.load()
        self.link = (
            ControlLink(config.control_url, config.site, http=control_http)
            if config.control_url
            else None
        )
        self.packages = LocalPackages(
            config.store,
            config.public_key,
            config.resolved_repository,
            incomplete_grace=config.incomplete_package_grace,
        )
        self.process: ServerProcess | None = None
        if config.serve_args is not None:
            args = [
                *config.serve_args,
                "--repository",
                str(config.resolved_repository),
                "--token-file",
                str(config.resolved_serving_token_file),
            ]
            if "--site" not in args and "--state-dir" not in args:
                args += ["--state-dir", str(config.state_dir / "serving")]
            self.process = ServerProcess(args, config.state_dir / "serve.log")
        self._serving_http = serving_http
        self.serving: ServingLink | None = None
        self.online = False
        self.message = ""
        self._last_heartbeat = 0.0
        self._counters: tuple[float, float, list[tuple[float, float]]] | None = None
        self._dirty = True  # heartbeat at once after a change
        self._stop = threading.Event()  # run() swaps in its own, so waits here end on SIGTERM

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        """Join if needed (when online), start the owned server, and reconcile once."""
        config = self.config
        config.resolved_repository.mkdir(parents=True, exist_ok=True)
        self._authenticate()
        if self.process is not None:
            self.process.start()
        self._connect_serving()
        self.step(self.fetch(0.0))

    def close(self) -> None:
        self._save()
        if self.process is not None:
            self.process.close()
        if self.serving is not None:
            self.serving.close()
        if self.link is not None:
            self.link.close()

    def _connect_serving(self) -> None:
        """Read the serving token (the owned server writes it at start) and wait until live."""
        path = self.config.resolved_serving_token_file
        deadline = time.monotonic() + self.config.server_start_timeout
        while not path.exists() and time.monotonic() < deadline and not self._stop.is_set():
            if self.process is not None and not self.process.alive():
                break
            self._stop.wait(0.05)
        if not path.exists():
            self.message = f"no serving token at {path}; is the inference server running?"
            log.error("%s", self.message)
            return
        token = read_secret_file(path)
        if self.serving is None or self.serving.token != token:
            if self.serving is not None:
                self.serving.close()
            self.serving = ServingLink(self.config.serving_url, token, http=self._serving_http)
        wait_live(self.serving, self.config.server_start_timeout, self.process)

    def _authenticate(self) -> None:
        """Use the agent token on disk, or trade the join token for one (needs the network)."""
        if self.link is None:
            return
        token_file = self.config.resolved_token_file
        if token_file.exists():
            self.link.token = read_secret_file(token_file)
            return
        join_file = self.config.join_token_file
        if join_file is None or not join_file.exists():
            self.message = (
                f"no agent token at {token_file} and no --join-token-file; "
                "running from local state only"
            )
            return
        try:
            joined = self.link.join(read_secret_file(join_file))
        except ControlPlaneUnreachable as exc:
            self.message = f"cannot join yet: {exc}"
            return
        write_secret_file(token_file, joined.token)
        self.config.desired_key_file.write_text(joined.signing_key, encoding="utf-8")
        self.link.token = joined.token
        self._event("agent.joined", self.config.site, {"labels": joined.labels})
        log.info("joined the control plane as site %s", joined.site)

    @property
    def desired_key(self) -> str:
        """The key desired state must verify under: pinned at join, else the package key."""
        path = self.config.desired_key_file
        return path.read_text(encoding="utf-8") if path.exists() else self.config.public_key

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set; long-polls the control plane between rounds."""
        self._stop = stop
        self.start()
        try:
            while not stop.is_set():
                raw = self._poll(stop)
                if stop.is_set():
                    break
                try:
                    self.step(raw)
                except Exception:  # one bad round must not stop the agent; log and go on
                    log.exception("reconcile round failed; retrying in %ss", self.config.interval)
                    stop.wait(self.config.interval)
        finally:
            self.close()

    def _poll(self, stop: threading.Event) -> bytes | None:
        wait = min(self.config.interval, 1.0) if self.state.probation else self.config.interval
        if self.link is None or self.link.token is None:
            self._authenticate()
            stop.wait(wait)
            return None
        raw = self.fetch(wait)
        if not self.online:
            stop.wait(wait)
        return raw

    def fetch(self, wait: float) -> bytes | None:
        """The signed desired state from the control plane when it changed (long-polls up to
        `wait` seconds); None when unchanged or unreachable."""
        if self.link is None or self.link.token is None:
            return None
        try:
            answer = self.link.desired(self.state.etag, wait)
        except (ControlPlaneUnreachable, AgentRefused, FleetError) as exc:
            if self.online:
                log.warning("control plane unreachable, working from local state: %s", exc)
            self.online = False
            return None
        self.online = True
        if answer.envelope is None:
            return None
        self.state.etag = answer.etag
        return answer.envelope

    def step(self, raw: bytes | None = None) -> None:
        """One round: supervise the server, take the newest verified desired state, watch
        fresh swaps, apply what differs, heartbeat and deliver reports."""
        self._supervise()
        desired = self._adopt(raw)
        installed = self._installed()
        self._watch_probation(installed)
        if desired is not None:
            for action in reconcile(list(desired.models), installed):
                self._act(action, desired, installed)
            self._prune(installed)
        self._save()
        self._heartbeat()
        self._flush_outbox()

    # -- runbook: the server process is gone -------------------------------------------------

    def _supervise(self) -> None:
        process = self.process
        if process is None:
            return
        if process.alive():
            if self.serving is None:
                self._connect_serving()
            return
        code = process.exit_code()
        log.error("the inference server exited (code %s); restarting it", code)
        process.restart()
        self._connect_serving()
        self.state.record({"kind": "restart", "time": self.clock(), "exit_code": code})
        self._alert("server", f"inference server exited (code {code}) and was restarted")
        self._dirty = True

    # -- desired state ----------------------------------------------------------------------

    def _adopt(self, raw: bytes | None) -> Desired | None:
        """The newest verified desired state among the API's answer, the copy replicated into
        the site's store, and the one kept on disk."""
        key, site = self.desired_key, self.config.site
        current: Desired | None = None
        if self.state.envelope is not None:
            try:
                current = accept(self.state.envelope.encode(), key, site)
            except SignatureInvalid as exc:  # the state file was edited: start over safely
                log.error("the kept desired state does not verify (%s); ignoring it", exc)
                self.state.envelope, self.state.generation = None, 0
        floor = self.state.generation
        for origin, candidate in (
            ("api", raw),
            ("store", read_local_copy(self.config.store, site)),
        ):
            if candidate is None or (current is not None and candidate == current.raw):
                continue
            try:
                found = accept(candidate, key, site, floor)
            except StaleDesired:
                continue
            except SignatureInvalid as exc:
                self._reject_desired(origin, str(exc))
                continue
            if current is None or found.generation > current.generation:
                current = found
                floor = found.generation
        if current is not None and current.generation != self.state.generation:
            log.info("desired state generation %d accepted", current.generation)
            self._dirty = True
        if current is not None:
            self.state.envelope = current.raw.decode()
            self.state.generation = current.generation
        return current

    def _reject_desired(self, origin: str, reason: str) -> None:
        message = f"rejected a desired-state document from the {origin}: {reason}"
        log.error("%s", message)
        self.message = message
        if origin == "api":
            self.state.etag = None  # fetch it again rather than trust the ETag of a bad one
        self._alert(f"desired-{origin}", message)

    # -- what is installed ------------------------------------------------------------------

    def _installed(self) -> dict[str, str]:
        """What the server serves now (the truth), or what the agent last knew if it is down."""
        if self.serving is not None:
            try:
                loaded = self.serving.loaded()
                self.state.installed = dict(loaded)
                return loaded
            except (ServingError, OSError):
                pass
        return dict(self.state.installed)

    # -- applying actions -------------------------------------------------------------------

    def _act(self, action: Action, desired: Desired, installed: dict[str, str]) -> None:
        model, version = action.model, action.version
        if action.kind == ActionKind.UNLOAD:
            self._unload(model, installed)
            return
        assert version is not None
        if action.kind == ActionKind.REFUSE:
            key = f"{model}@{version}"
            if self.state.refused.get(key) != desired.generation:
                self.state.refused[key] = desired.generation
                self._report(model, version, "refused", action.reason, desired.generation)
            return
        failed = self.state.failed.get(model)
        if (
            failed
            and failed.get("version") == version
            and failed.get("generation") == desired.generation
        ):
            return  # failed for this desired state already; a new one is a new attempt
        rollback = action.kind == ActionKind.ROLLBACK
        previous = installed.get(model)
        try:
            self.packages.install(model, version, installed=None if rollback else previous)
        except PackageMissing as exc:
            self.message = str(exc)  # replication will bring it; not a failure
            return
        except PackageError as exc:
            self._fail(model, version, desired.generation, f"package rejected: {exc}")
            return
        requests, errors = self._model_counters(model)
        try:
            self._require_serving().load(model, version)
        except ServingError as exc:
            self.packages.remove(model, version)
            self._fail(model, version, desired.generation, f"load failed: {exc}")
            return
        now = self.clock()
        if previous is not None:
            self.state.previous[model] = previous
        self.state.installed[model] = version
        installed[model] = version
        self.state.failed.pop(model, None)
        kind = "rollback" if rollback else "load"
        self.state.record(
            {
                "kind": kind,
                "model": model,
                "version": version,
                "from": previous,
                "generation": desired.generation,
                "time": now,
            }
        )
        if rollback:
            self.state.probation.pop(model, None)
            self._report(model, version, "rolled_back", f"from {previous}", desired.generation)
        else:
            self.state.probation[model] = Probation(
                model, version, previous, now, desired.generation, requests, errors
            )
            self._report(model, version, "applied", f"from {previous}", desired.generation)
        self.message = f"{model}:{version} serving"
        self._dirty = True
        self._save()

    def _unload(self, model: str, installed: dict[str, str]) -> None:
        try:
            self._require_serving().unload(model)
        except ServingError as exc:
            self.message = f"could not unload {model}: {exc}"
            return
        installed.pop(model, None)
        self.state.installed.pop(model, None)
        self.state.probation.pop(model, None)
        self.state.record({"kind": "unload", "model": model, "time": self.clock()})
        self.packages.prune(model, set())
        self._dirty = True

    def _fail(self, model: str, version: str, generation: int, reason: str) -> None:
        log.error("%s:%s: %s; the serving version is unchanged", model, version, reason)
        self.state.failed[model] = {"version": version, "generation": generation, "reason": reason}
        self.message = f"{model}:{version}: {reason}"
        self._report(model, version, "failed", reason, generation)
        self._event("site.apply_failed", f"{model}:{version}", {"reason": reason})
        self._dirty = True

    def _require_serving(self) -> ServingLink:
        if self.serving is None:
            self._connect_serving()
        if self.serving is None:
            raise ServerUnreachable("the inference server is not reachable")
        return self.serving

    def _prune(self, installed: dict[str, str]) -> None:
        """Keep in the repository only what serves and an older previous version, so a
        restarted server (which serves each model's newest) comes back as it was."""
        for model, version in installed.items():
            keep = {version}
            previous = self.state.previous.get(model)
            if previous is not None and is_older(previous, version):
                keep.add(previous)
            self.packages.prune(model, keep)

    # -- runbook: bad after a swap -> roll back ----------------------------------------------

    def _watch_probation(self, installed: dict[str, str]) -> None:
        for model, probation in list(self.state.probation.items()):
            if installed.get(model) != probation.version:
                self.state.probation.pop(model)
                continue
            ready = self.serving.ready() if self.serving is not None else False
            requests, errors = self._model_counters(model)
            verdict, reason = judge_probation(
                probation,
                now=self.clock(),
                ready=ready,
                requests=requests,
                errors=errors,
                bounds=self.config.bounds,
            )
            if verdict == Verdict.PASS:
                self.state.probation.pop(model)
                log.info("%s:%s passed probation: %s", model, probation.version, reason)
            elif verdict == Verdict.ROLLBACK:
                self._roll_back(probation, reason, installed)

    def _roll_back(self, probation: Probation, reason: str, installed: dict[str, str]) -> None:
        model, bad, previous = probation.model, probation.version, probation.previous
        self.state.probation.pop(model, None)
        log.error("%s:%s is unhealthy (%s); rolling back to %s", model, bad, reason, previous)
        try:
            if previous is None:
                self._require_serving().unload(model)
                installed.pop(model, None)
                self.state.installed.pop(model, None)
            else:
                self.packages.install(model, previous, installed=None)
                self._require_serving().load(model, previous)
                installed[model] = previous
                self.state.installed[model] = previous
        except EdgeloopError as exc:
            log.error("rollback of %s to %s failed: %s", model, previous, exc)
            reason = f"{reason}; rollback to {previous} failed: {exc}"
        else:
            self.packages.remove(model, bad)
        self.state.failed[model] = {
            "version": bad,
            "generation": probation.generation,
            "reason": reason,
        }
        self.state.record(
            {
                "kind": "rollback",
                "model": model,
                "version": previous,
                "from": bad,
                "generation": probation.generation,
                "time": self.clock(),
                "reason": reason,
            }
        )
        note = f"{reason}; rolled back to {previous}" if previous else f"{reason}; unloaded"
        self.message = f"{model}:{bad}: {note}"
        self._report(model, bad, "failed", note, probation.generation)
        if previous is not None:
            self._report(model, previous, "rolled_back", f"from {bad}: {reason}", None)
        self._event("site.rolled_back", f"{model}:{bad}", {"to": previous, "reason": reason})
        self._dirty = True
        self._save()

    # -- telemetry, alerts and reports ------------------------------------------------------

    def _model_counters(self, model: str) -> tuple[float, float]:
        samples = self._metrics()
        requests = total(samples, "edgeloop_requests_total", model=model)
        errors = total(samples, "edgeloop_requests_total", model=model, status=is_error_status)
        return requests, errors

    def _metrics(self) -> list[Sample]:
        if self.serving is None:
            return []
        try:
            return self.serving.metrics()
        except ServerUnreachable:
            return []

    def _heartbeat(self) -> None:
        now = self.clock()
        due = now - self._last_heartbeat >= self.config.heartbeat_interval
        if not (due or self._dirty):
            return
        status = self.status()
        for alert in alerts(
            {"spool": status.get("spool_fraction"), "backlog": self._backlog_fraction()},
            self.config.bounds,
            self.state.alerts,
        ):
            self.state.alerts[alert.name] = alert.raised
            if alert.raised:
                self._alert(alert.name, alert.message)
            else:
                self._event("site.alert_cleared", alert.name, {"message": alert.message})
        if self.link is None or self.link.token is None:
            return
        try:
            etag = self.link.heartbeat(status)
        except (ControlPlaneUnreachable, AgentRefused, FleetError) as exc:
            self.online = False
            log.debug("heartbeat not delivered: %s", exc)
            return
        self.online = True
        self._last_heartbeat = now
        self._dirty = False
        if etag is not None and etag != self.state.etag:
            self.state.etag = None  # a change we have not seen: the next poll fetches it

    def status(self) -> dict[str, Any]:
        """The heartbeat body: loaded versions, health, error rate, p99, backlog, capture."""
        samples = self._metrics()
        requests = total(samples, "edgeloop_requests_total")
        errors = total(samples, "edgeloop_requests_total", status=is_error_status)
        buckets: dict[float, float] = {}
        for s in samples:
            if s.name == "edgeloop_request_seconds_bucket" and "le" in s.labels:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
        points = sorted(buckets.items())
        error_rate, p99 = 0.0, None
        if self._counters is not None:
            before_req, before_err, before_buckets = self._counters
            error_rate = rate(errors - before_err, requests - before_req)
            old = dict(before_buckets)
            delta = [(le, count - old.get(le, 0.0)) for le, count in points]
            value = quantile(delta, 0.99)
            p99 = None if value is None else round(value * 1000.0, 3)
        self._counters = (requests, errors, points)
        ready = self.serving.ready() if self.serving is not None else False
        spool = total(samples, "edgeloop_capture_spool_bytes")
        spool_fraction = None
        if self.config.spool_max_bytes and samples:
            spool_fraction = min(1.0, spool / self.config.spool_max_bytes)
        body: dict[str, Any] = {
            "loaded": dict(self.state.installed),
            "healthy": bool(ready) and not self._any_failed_now(),
            "error_rate": error_rate,
            "capture_drops": int(total(samples, "edgeloop_capture_dropped_total")),
            "applied_generation": self.state.generation,
        }
        if p99 is not None:
            body["p99_ms"] = p99
        backlog = self._backlog()
        if backlog is not None:
            body["backlog"] = backlog
        if spool_fraction is not None:
            body["spool_fraction"] = spool_fraction
        if self.message:
            body["message"] = self.message[:2000]
        return body

    def _any_failed_now(self) -> bool:
        """A failed version for the current desired state is a health problem to show."""
        return any(f.get("generation") == self.state.generation for f in self.state.failed.values())

    def _backlog(self) -> int | None:
        if not self.config.ledgers:
            return None
        from edgeloop.replication.ledger import Ledger

        count = 0
        for path in self.config.ledgers:
            if not path.exists():
                continue
            ledger = Ledger(path)
            try:
                count += ledger.backlog()
            finally:
                ledger.close()
        return count

    def _backlog_fraction(self) -> float | None:
        backlog = self._backlog()
        return None if backlog is None else backlog / max(1, self.config.max_backlog)

    def _alert(self, name: str, message: str) -> None:
        """Raise an alert: an event in the site's journal and a report to the control plane."""
        log.warning("alert %s: %s", name, message)
        self._event("site.alert", name, {"message": message})
        self.state.queue_report({"outcome": "alert", "message": f"{name}: {message}"[:2000]})

    def _report(
        self, model: str, version: str, outcome: str, message: str, generation: int | None
    ) -> None:
        report: dict[str, Any] = {
            "model": model,
            "version": version,
            "outcome": outcome,
            "message": message[:2000],
        }
        if generation is not None:
            report["generation"] = generation
        self.state.queue_report(report)

    def _flush_outbox(self) -> None:
        """Deliver queued reports in order; on an outage keep them for the next round."""
        if self.link is None or self.link.token is None:
            return
        while self.state.outbox:
            report = self.state.outbox[0]
            try:
                self.link.report(report)
            except ControlPlaneUnreachable:
                self.online = False
                break
            except AgentRefused as exc:
                log.error("%s", exc)
                break
            except FleetError as exc:  # refused as malformed: drop it rather than block the rest
                log.error("report dropped: %s", exc)
            self.state.outbox.pop(0)
            self._save()

    def _event(self, type_: str, subject: str, data: dict[str, Any]) -> None:
        sink = self.config.events
        if sink is None:
            return
        try:
            sink.emit(Event(type=type_, site=self.config.site, subject=subject, data=data))
        except Exception:  # the journal is a witness, never a reason to stop serving
            log.exception("could not journal %s", type_)

    def _save(self) -> None:
        self.state_file.save(self.state)
