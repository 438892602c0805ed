"""The run report in the Airflow UI: a "Run report" tab on every DAG run.

The tab (an external view, destination `dag_run`) shows `/run-report/dags/<dag>/runs/<run>`, a
page of this plugin's FastAPI app, mounted in Airflow's api-server. The app is thin: it finds the
page the run's `run_report` task wrote (that task's XCom `report_page`: the page's URI, file://
or s3://, and the AWS connection to read it with), reads it and serves it. The report itself is
made in the task (include/run_report/task.py); nothing here imports the project's code.

Access is Airflow's own: the route depends on the api-server's `requires_access_dag("GET", RUN)`,
so the UI's session cookie (or an API token) of a user who may read the DAG's runs is needed.
The app is built when the api-server asks for it: every Airflow process loads plugins, and only
the api-server serves them.

The same app serves the "Repair run" tab (`/run-report/repair/dags/<dag>/runs/<run>`,
plugins/run_repair.py): GET shows what a repair of the failed run clears, a form POST to the same
route clears it through Airflow's REST API as the signed-in user (their token), CSRF-checked.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin

from plugins import run_repair as R

URL_PREFIX = "/run-report"
REPAIR_PATH = "/repair/dags"  # the Repair run tab: URL_PREFIX + REPAIR_PATH + /<dag>/runs/<run>
TASK_ID = "run_report"
XCOM_KEY = "report_page"  # what include/run_report/task.py pushes (PAGE_XCOM_KEY)
# The page is the task's own HTML: inline styles and SVG, no script, nothing fetched.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"

Finder = Callable[[str, str], Mapping[str, Any] | None]
Reader = Callable[[str, Mapping[str, Any]], str | None]


def find_page(dag_id: str, run_id: str) -> Mapping[str, Any] | None:
    """The run's `report_page` XCom from the metadata database, None when it has none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(run_id=run_id, key=XCOM_KEY, task_ids=TASK_ID, dag_ids=dag_id, limit=1)
    with create_session() as session:
        row = session.scalars(query).first()
        value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, Mapping) else None


def read_text(uri: str, where: Mapping[str, Any]) -> str | None:
    """A report file by URI (file:// or s3://; nothing else), None when it is not there."""
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        return path.read_text() if path.is_file() else None
    if uri.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=where.get("aws_conn_id"), region_name=where.get("region"))
        bucket, key = hook.parse_s3_url(uri)
        return hook.read_key(key, bucket) if hook.check_for_key(key, bucket) else None
    return None


def _message(title: str, text: str, status: int) -> Any:
    from fastapi.responses import HTMLResponse

    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font:14px system-ui,sans-serif;margin:2em'><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": PAGE_POLICY})


def _report_run(text: str | None) -> str | None:
    import json

    try:
        return json.loads(text).get("run_id") if text else None
    except (ValueError, AttributeError):
        return None


def _user_token(request: Any) -> str | None:
    """The signed-in user's token, as Airflow's own `get_user` reads it: a bearer token, else the
    UI's session cookie."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN)


def _airflow_api(request: Any) -> R.ApiCall:
    """Airflow's REST API where the UI reaches it: `[api] base_url`, else this request's origin."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None) or f"{request.url.scheme}://{request.headers['host']}"
    return R.http_api(base)


def _repair_page(text: str, status: int = 200) -> Any:
    from fastapi.responses import HTMLResponse

    return HTMLResponse(
        text,
        status_code=status,
        headers={"Content-Security-Policy": R.PAGE_POLICY, "Cache-Control": "no-store"},
    )


def create_app(
    find: Finder = find_page,
    read: Reader = read_text,
    authorize: Any = None,
    api: R.ApiCall | None = None,
) -> Any:
    """The plugin's FastAPI app; `authorize` (a FastAPI dependency) defaults to Airflow's access
    check for reading the runs of the path's DAG; `api` (how the repair calls Airflow's REST
    API) to Airflow's own api-server (`_airflow_api`)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, Form, Request
    from fastapi.responses import HTMLResponse

    if authorize is None:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
        from airflow.api_fastapi.core_api.security import requires_access_dag

        authorize = requires_access_dag("GET", DagAccessEntity.RUN)
    app = FastAPI(title="Run report", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/dags/{dag_id}/runs/{run_id:path}", dependencies=[Depends(authorize)])
    def report(dag_id: str, run_id: str) -> Any:
        where = find(dag_id, run_id)
        if not where or not where.get("html"):
            return _message(
                "No run report",
                f"Run {run_id} of {dag_id} has no run report page: its run_report task has not run "
                "yet, or could not write the page (its log says why).",
                404,
            )
        page = read(str(where["html"]), where)
        if page is None:
            return _message("No run report", f"{where['html']} is not there (any more).", 404)
        if where.get("json"):
            # One report per DAG and date: a later run of the same date replaced this one's.
            other = _report_run(read(str(where["json"]), where))
            if other is not None and other != run_id:
                return _message(
                    "Report replaced",
                    f"The report of this run's date now belongs to run {other}, a later run of the "
                    "same date: open that run's report.",
                    404,
                )
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    def _checked_ids(dag_id: str, run_id: str) -> None:
        if not R.DAG_ID.fullmatch(dag_id) or not R.RUN_ID.fullmatch(run_id):
            raise R.Refusal("Not a run", "That is not a DAG id and run id Airflow would give a run.", 400)

    # Sync routes (a worker thread each): the repair calls the api-server it runs in.
    def repair_confirmation(dag_id: str, run_id: str, request: Request, user: Any) -> Any:
        try:
            _checked_ids(dag_id, run_id)
            token = _user_token(request) or ""
            plan = R.prepare(api or _airflow_api(request), token, user.get_name(), dag_id, run_id)
        except R.Refusal as refusal:
            return _repair_page(R.refusal_page(refusal), refusal.status)
        csrf = R.csrf_token(token, dag_id, run_id, plan.fingerprint())
        return _repair_page(R.confirmation_page(plan, csrf))

    def repair_run(
        dag_id: str,
        run_id: str,
        request: Request,
        user: Any,
        csrf: str = Form(""),
        plan: str = Form(""),
    ) -> Any:
        try:
            _checked_ids(dag_id, run_id)
            token = _user_token(request) or ""
            site = request.headers.get("sec-fetch-site", "same-origin")
            expected = R.csrf_token(token, dag_id, run_id, plan)
            if site not in ("same-origin", "none") or not csrf or not hmac.compare_digest(csrf, expected):
                raise R.Refusal(
                    "Not confirmed here",
                    "This repair was not confirmed from its Repair run tab (the form's token does not "
                    "match your session): nothing was cleared. Open the tab again and confirm there.",
                    403,
                )
            done = R.repair(api or _airflow_api(request), token, user.get_name(), dag_id, run_id, plan)
        except R.Refusal as refusal:
            return _repair_page(R.refusal_page(refusal), refusal.status)
        return _repair_page(R.done_page(done))

    # FastAPI reads the annotations (strings here) against this module's globals, where the
    # lazily imported names are not: give it the objects; `user` is Airflow's signed-in user.
    route = f"{REPAIR_PATH}/{{dag_id}}/runs/{{run_id:path}}"
    for method, endpoint in ((app.get, repair_confirmation), (app.post, repair_run)):
        endpoint.__annotations__.update(request=Request, user=Annotated[Any, Depends(get_user)])
        method(route, dependencies=[Depends(authorize)])(endpoint)
    return app


@cache
def _app() -> Any:
    return create_app()


class _BuiltOnRequest:
    """`fastapi_apps`, built the first time it is read (by the api-server, not by workers)."""

    def __get__(self, obj: Any, owner: type) -> list[dict[str, Any]]:
        return [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Run report"}]


class RunReportPlugin(AirflowPlugin):
    name = "run_report"
    fastapi_apps = _BuiltOnRequest()  # type: ignore[assignment]
    external_views = [
        {
            "name": "Run report",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",  # a tab of every DAG run
            "url_route": "run-report",
        },
        {
            "name": "Repair run",
            "href": f"{URL_PREFIX}{REPAIR_PATH}/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "repair-run",
        },
    ]
