"""Helpers for API tests over real HTTP: a `timecredits api` child process and a small httpx client around it."""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import free_port
from timecredits.benchmark.mix import AMOUNT  # noqa: F401 - credits as the API shows them, for the tests
from timecredits.processes import Child



class ApiProcess(Child):
    """`timecredits api --port N` (uvicorn) as a child process with its own log file, stopped by its pid."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None, workers: int = 1) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("api", ["api", "--port", str(self.port), "--workers", str(workers)], dict(env), log_path)

    def wait_answering(self, path: str, status: int = 200, timeout: float = 60) -> httpx.Response:
        """Until `GET path` answers `status`; fails at once (with the log) if the process exits."""
        deadline = time.monotonic() + timeout
        last: str = "no answer"
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"the API process exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(self.url + path, timeout=3)
                if response.status_code == status:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"GET {path} did not answer {status} within {timeout} s (last: {last}):\n"
                             f"{self.log_tail()}")


@contextmanager
def ready_api(env: Mapping[str, str], log_path: Path) -> Iterator[ApiProcess]:
    """`timecredits api` with `env`, once it answers `/readyz` (database and broker reachable); stopped after."""
    process = ApiProcess(env, log_path)
    try:
        process.wait_answering("/readyz", 200, timeout=60)
        yield process
    finally:
        process.stop()


class Api:
    """An httpx client for one API process; `token=` on each call says who asks (None: no Authorization)."""

    def __init__(self, url: str, admin_token: str, timeout: float = 30) -> None:
        self.url = url
        self.admin = admin_token
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _headers(token: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if token is not None:
            out["Authorization"] = f"Bearer {token}"
        return out

    def get(self, path: str, token: str | None, *, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> httpx.Response:
        return self.http.get(path, params=params, headers=self._headers(token, headers))

    def post(self, path: str, token: str | None, body: Any = None, *, content: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> httpx.Response:
        all_headers = self._headers(token, headers)
        if content is not None:
            all_headers.setdefault("Content-Type", "application/json")
            return self.http.post(path, content=content, headers=all_headers)
        if body is None:
            return self.http.post(path, headers=all_headers)
        return self.http.post(path, json=body, headers=all_headers)

    def request(self, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
        return self.http.request(method, path, json=body, headers=self._headers(token, None))

    # -- registry shortcuts (admin) --------------------------------------------------------------
    def organisation(self, org_id: str, kinds: list[str], area: str, auto_approve: bool = False) -> dict[str, Any]:
        response = self.post("/v1/organisations", self.admin, {"id": org_id, "name": f"Org {org_id}", "area": area,
                                                               "kinds": kinds, "auto_approve": auto_approve})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def volunteer(self, name: str, area: str, *, member_of: Sequence[str] = (), reference: str | None = None) -> str:
        """A new volunteer's id (made by the server), a member at once of the organisations `member_of` (with
        `reference` as each one's own reference for them)."""
        response = self.post("/v1/volunteers", self.admin, {"display_name": f"Vol {name}", "area": area,
                                                            "consent_stats": True})
        assert response.status_code == 201, response.text
        volunteer_id: str = response.json()["id"]
        for org_id in member_of:
            body = {"volunteer_id": volunteer_id} if reference is None else {"volunteer_id": volunteer_id,
                                                                             "reference": reference}
            added = self.post(f"/v1/organisations/{org_id}/members", self.admin, body)
            assert added.status_code == 201, added.text
        return volunteer_id

    def token(self, role: str, *, org_id: str | None = None, volunteer_id: str | None = None) -> str:
        body: dict[str, Any] = {"role": role}
        if org_id is not None:
            body["org_id"] = org_id
        if volunteer_id is not None:
            body["volunteer_id"] = volunteer_id
        response = self.post("/v1/tokens", self.admin, body)
        assert response.status_code == 201, response.text
        return response.json()["token"]  # type: ignore[no-any-return]

    # -- outcomes --------------------------------------------------------------------------------
    def accepted(self, response: httpx.Response) -> str:
        """The event id of a 202 answer."""
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "pending" and set(body) == {"event_id", "status"}, body
        return body["event_id"]  # type: ignore[no-any-return]

    def outcome(self, event_id: str, token: str | None = None, timeout: float = 60) -> dict[str, Any]:
        """`GET /v1/events/{id}` until it is no longer pending."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/v1/events/{event_id}", token or self.admin)
            assert response.status_code == 200, response.text
            body = response.json()
            if body["status"] != "pending":
                return body  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} still pending after {timeout} s")
            time.sleep(0.1)

    def applied(self, event_id: str, token: str | None = None) -> dict[str, Any]:
        body = self.outcome(event_id, token)
        assert body["status"] == "applied", body
        return body

    def balance(self, volunteer_id: str, token: str | None = None) -> dict[str, str]:
        response = self.get(f"/v1/volunteers/{volunteer_id}/balance", token or self.admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert all(AMOUNT.match(body[k]) for k in ("balance", "held", "available")), body
        return body  # type: ignore[no-any-return]


def error_code(response: httpx.Response) -> tuple[int, str]:
    """(status, error code) of an error answer, checking the error shape on the way."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]
