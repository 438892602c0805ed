"""Repair run: rerun what failed in a failed DAG run, in the same run, from the UI.

The "Repair run" tab of every DAG run (plugins/run_report_view.py mounts the routes) works out
what a repair clears, shows it, and on confirmation clears it through Airflow's public REST API
as the signed-in user (their session token, forwarded as a bearer token: no account of the
plugin's own), so Airflow's own permissions decide who may repair.

What it clears is what a user would get from the failed tasks' Clear with the dialog's defaults
(`POST /api/v2/dags/{dag_id}/clearTaskInstances` with `dag_run_id`, the failed tasks as
`task_ids`, `include_downstream`, not upstream, not only failed, not past or future, exactly as
the UI's Clear sends it): the failed tasks, everything downstream of them and, as Airflow's clear
does for setup and teardown tasks, the run's setup and teardown (the EMR cluster's
`create_cluster`/`terminate_cluster`, the EMR Serverless application's
`create_application`/`delete_application`, the local run's `start_spark`/`stop_spark`). The
confirmation lists Airflow's own answer to that request as a dry run; the repair sends it again
for real only if Airflow's answer is still the one confirmed.

It refuses a run that is queued or running (wait for it to end), a green run (nothing to
repair), and a failed run with a task still running or none failed. Nothing here imports the
project's code: the pure rules are `plan_repair` and `step_task`, the rest talks HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# Airflow's own patterns: a DAG id (airflow.utils.helpers.KEY_REGEX) and a run id (the default
# `[core] allowed_run_id_pattern`, which the scheduler's and the UI's run ids follow).
DAG_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
RUN_ID = re.compile(r"[A-Za-z0-9_.~:+-]{1,250}")
STEP_TASK_PREFIX = "run_"  # a step's task on both targets (include/run_plan.step_task_ids)
REPORT_TASK = "run_report"  # the run report's task (run_report_view.TASK_ID): not a step
# The page: inline styles, one form posting to this same route; no script, nothing fetched.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'self'"
)
UNFINISHED = {"running", "queued", "scheduled", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
PAGE_LIMIT = 100  # Airflow's default `[api] maximum_page_limit`

# (method, path under /api/v2, the user's token, JSON body or None, query) -> (status, body)
ApiCall = Callable[[str, str, str, Any, Mapping[str, Any] | None], tuple[int, Any]]


class Refusal(Exception):
    """What the page says instead of repairing, with the HTTP status it is served with."""

    def __init__(self, title: str, text: str, status: int) -> None:
        super().__init__(text)
        self.title, self.text, self.status = title, text, status


Marker = str | tuple[str, int]  # a task id, or (task id, map index) for one mapped instance


def _marker(ti: Mapping[str, Any]) -> Marker:
    index = ti.get("map_index", -1)
    return ti["task_id"] if index is None or index < 0 else (ti["task_id"], int(index))


def plan_repair(run: Mapping[str, Any], task_instances: Sequence[Mapping[str, Any]]) -> list[Marker]:
    """The tasks a repair of `run` clears with their downstream (its failed ones), or a Refusal.

    `run` and `task_instances` as the REST API gives them (`state`, `task_id`, `map_index`)."""
    run_id, state = run.get("dag_run_id", "?"), run.get("state")
    if state in ("queued", "running"):
        raise Refusal(
            "Run not finished",
            f"Run {run_id} is still {state}: a repair reruns what failed once the run has ended. "
            "Wait for it to end (or mark it failed), then repair it.",
            409,
        )
    if state == "success":
        raise Refusal("Nothing to repair", f"Run {run_id} succeeded: there is nothing to repair.", 409)
    if state != "failed":
        raise Refusal("Cannot repair", f"Run {run_id} is {state}: only a failed run can be repaired.", 409)
    busy = sorted(ti["task_id"] for ti in task_instances if ti.get("state") in UNFINISHED)
    if busy:
        raise Refusal(
            "Run not finished",
            f"Run {run_id} failed but tasks of it are still going ({', '.join(busy)}): wait for "
            "them to end, then repair it.",
            409,
        )
    failed = [_marker(ti) for ti in task_instances if ti.get("state") == "failed"]
    if not failed:  # a task can only fail upstream of something that failed; kept for a hand-set state
        failed = [_marker(ti) for ti in task_instances if ti.get("state") == "upstream_failed"]
    if not failed:
        raise Refusal(
            "Nothing failed",
            f"Run {run_id} failed but none of its tasks did (the run was marked failed or timed "
            "out): clear the run (Run -> Clear) to run it again.",
            409,
        )
    return sorted(set(failed), key=str)


def clear_body(run_id: str, task_ids: Sequence[Marker], *, dry_run: bool) -> dict[str, Any]:
    """The request the UI's task Clear sends with the dialog's defaults, for these tasks."""
    return {
        "dry_run": dry_run,
        "dag_run_id": run_id,
        "task_ids": [list(t) if isinstance(t, tuple) else t for t in task_ids],
        "include_downstream": True,
        "include_upstream": False,
        "include_future": False,
        "include_past": False,
        "only_failed": False,
    }


def step_task(task_id: str) -> bool:
    """A pipeline step's task (`run_<step>`), as opposed to setup, audit plumbing and the like."""
    return task_id.startswith(STEP_TASK_PREFIX) and task_id != REPORT_TASK


@dataclass(frozen=True)
class Repair:
    """A repair as Airflow answered its dry run: what it clears, and what it keeps."""

    dag_id: str
    run_id: str
    roots: list[Marker]
    cleared: list[dict[str, Any]]  # task_id, map_index, state (before the clear)
    kept_steps: list[str]  # step tasks that succeeded and are not cleared

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [ti for ti in self.cleared if step_task(ti["task_id"])]

    @property
    def others(self) -> list[dict[str, Any]]:
        return [ti for ti in self.cleared if not step_task(ti["task_id"])]

    def fingerprint(self) -> str:
        """The cleared set, so that the confirmed repair is the one sent."""
        text = "\n".join(sorted(f"{ti['task_id']}[{ti.get('map_index', -1)}]" for ti in self.cleared))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def csrf_token(user_token: str, dag_id: str, run_id: str, fingerprint: str) -> str:
    """The form's token: keyed by the user's session token, which another site cannot read."""
    message = f"repair\n{dag_id}\n{run_id}\n{fingerprint}".encode()
    return hmac.new(user_token.encode(), message, hashlib.sha256).hexdigest()


# ---- talking to Airflow's REST API as the user -----------------------------------------------
def http_api(base_url: str, timeout: float = 60) -> ApiCall:
    """Airflow's public REST API at `base_url` (the api-server's `[api] base_url`)."""
    import httpx

    root = base_url.rstrip("/") + "/api/v2"

    def call(method: str, path: str, token: str, body: Any, query: Any) -> tuple[int, Any]:
        try:
            response = httpx.request(
                method,
                root + path,
                json=body,
                params=dict(query or {}),
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise Refusal("Airflow's API did not answer", f"{root}: {exc}", 502) from exc
        try:
            return response.status_code, response.json() if response.content else None
        except ValueError:
            return response.status_code, response.text

    return call


def _detail(body: Any) -> str:
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    return detail if isinstance(detail, str) else str(detail)


def _checked(status: int, body: Any, *, user: str, dag_id: str, run_id: str, doing: str) -> Any:
    """The answer's body, or the Refusal that says what Airflow refused and why."""
    if status < 400:
        return body
    if status == 401:
        text = f"Airflow did not accept your session ({_detail(body)}): sign in again."
        raise Refusal("Not signed in", text, 401)
    if status == 403:
        raise Refusal(
            "Not allowed",
            f"Airflow does not allow {user} to {doing} of DAG {dag_id} ({_detail(body)}). Repairing a run "
            "clears its task instances: ask for a role that may edit this DAG's runs.",
            403,
        )
    if status == 404:
        raise Refusal("No such run", f"Airflow has no run {run_id} of DAG {dag_id} ({_detail(body)}).", 404)
    raise Refusal("Airflow refused", f"Airflow answered {status} to {doing}: {_detail(body)}", 502)


def _path(dag_id: str, run_id: str = "") -> str:
    run = f"/dagRuns/{quote(run_id, safe='')}" if run_id else ""
    return f"/dags/{quote(dag_id, safe='')}{run}"


def fetch_run(api: ApiCall, token: str, user: str, dag_id: str, run_id: str) -> tuple[dict, list[dict]]:
    """The run and all its task instances (every page), read as the user."""
    where = {"user": user, "dag_id": dag_id, "run_id": run_id, "doing": "read the runs"}
    run = _checked(*api("GET", _path(dag_id, run_id), token, None, None), **where)
    tis: list[dict] = []
    while True:
        query = {"limit": PAGE_LIMIT, "offset": len(tis)}
        page = _checked(*api("GET", _path(dag_id, run_id) + "/taskInstances", token, None, query), **where)
        tis.extend(page["task_instances"])
        if not page["task_instances"] or len(tis) >= page["total_entries"]:
            return run, tis


def clear(api: ApiCall, token: str, user: str, dag_id: str, body: dict[str, Any]) -> list[dict]:
    status, answer = api("POST", _path(dag_id) + "/clearTaskInstances", token, body, None)
    doing = "clear the task instances"
    where = {"user": user, "dag_id": dag_id, "run_id": body["dag_run_id"], "doing": doing}
    return list(_checked(status, answer, **where)["task_instances"])


def prepare(api: ApiCall, token: str, user: str, dag_id: str, run_id: str) -> Repair:
    """What a repair of the run clears, as Airflow answers its dry run for this user (a Refusal
    when the run may not be repaired or the user may not clear it)."""
    run, tis = fetch_run(api, token, user, dag_id, run_id)
    roots = plan_repair(run, tis)
    cleared = clear(api, token, user, dag_id, clear_body(run_id, roots, dry_run=True))
    rows = sorted(
        (
            {"task_id": ti["task_id"], "map_index": ti.get("map_index", -1), "state": ti.get("state")}
            for ti in cleared
        ),
        key=lambda ti: (ti["task_id"], ti["map_index"]),
    )
    cleared_ids = {row["task_id"] for row in rows}
    kept = sorted(
        {t["task_id"] for t in tis if step_task(t["task_id"]) and t.get("state") == "success"} - cleared_ids
    )
    return Repair(dag_id, run_id, roots, rows, kept)


def repair(api: ApiCall, token: str, user: str, dag_id: str, run_id: str, fingerprint: str) -> Repair:
    """Clear what the confirmed repair clears, if that is still what Airflow would clear."""
    planned = prepare(api, token, user, dag_id, run_id)
    if not hmac.compare_digest(planned.fingerprint(), fingerprint):
        raise Refusal(
            "The run changed",
            f"What a repair of run {run_id} clears has changed since the confirmation was shown: "
            "nothing was cleared. Open the Repair run tab again to see what it clears now.",
            409,
        )
    clear(api, token, user, dag_id, clear_body(run_id, planned.roots, dry_run=False))
    return planned


# ---- pages ------------------------------------------------------------------------------------
_STYLE = "font:14px system-ui,sans-serif;margin:1.5em;max-width:60em;line-height:1.45"  # one inline style


def page(title: str, body_html: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='{_STYLE}'><h1 style='font-size:1.4em'>{html.escape(title)}</h1>"
        f"{body_html}</body></html>"
    )


def _name(ti: Mapping[str, Any]) -> str:
    index = ti.get("map_index", -1)
    return ti["task_id"] + (f"[{index}]" if index is not None and index >= 0 else "")


def _items(tis: Sequence[Mapping[str, Any]]) -> str:
    return "".join(
        f"<li><code>{html.escape(_name(ti))}</code> "
        f"<small>({html.escape(str(ti.get('state') or 'no state'))})</small></li>"
        for ti in tis
    )


def confirmation_page(plan: Repair, csrf: str) -> str:
    steps = plan.steps
    roots = ", ".join(html.escape(r if isinstance(r, str) else f"{r[0]}[{r[1]}]") for r in plan.roots)
    body = [
        f"<p>Run <code>{html.escape(plan.run_id)}</code> of <code>{html.escape(plan.dag_id)}</code> failed. "
        "A repair reruns, in this same run, the failed tasks and everything after them, with the "
        f"run's setup and teardown (Clear of {roots} with downstream, as the Clear dialog's "
        "defaults do).</p>",
        f"<h2 style='font-size:1.1em'>Steps it reruns ({len(steps)})</h2>",
        f"<ul>{_items(steps)}</ul>" if steps else "<p>No pipeline step: only the tasks below.</p>",
        f"<h2 style='font-size:1.1em'>With them ({len(plan.others)})</h2><ul>{_items(plan.others)}</ul>",
    ]
    if plan.kept_steps:
        kept = ", ".join(f"<code>{html.escape(t)}</code>" for t in plan.kept_steps)
        body.append(f"<p>Not rerun: the steps that succeeded ({kept}); what they wrote stays.</p>")
    body.append(
        "<form method='post'>"
        f"<input type='hidden' name='csrf' value='{html.escape(csrf)}'>"
        f"<input type='hidden' name='plan' value='{html.escape(plan.fingerprint())}'>"
        "<button type='submit' style='font-size:1em;padding:.4em 1.2em'>Repair run</button>"
        "</form>"
    )
    return page(f"Repair run {plan.run_id}", "".join(body))


def done_page(plan: Repair) -> str:
    steps = ", ".join(f"<code>{html.escape(_name(ti))}</code>" for ti in plan.steps) or "no step"
    body = (
        f"<p>Cleared {len(plan.cleared)} task instances of run <code>{html.escape(plan.run_id)}</code>: "
        f"the run is queued again and reruns {steps}, then what follows them. Follow it in the grid.</p>"
        f"<ul>{_items(plan.cleared)}</ul>"
    )
    return page("Repair started", body)


def refusal_page(refusal: Refusal) -> str:
    return page(refusal.title, f"<p>{html.escape(refusal.text)}</p>")
