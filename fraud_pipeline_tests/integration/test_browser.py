"""The UI as a user sees it: `dagster dev` on loopback, runs launched through GraphQL, pages in headless Chromium.

Skipped only when no Chromium binary is installed (CI installs it from the OS packages, see ``.ci/run``).
"""

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from fraud_pipeline.definitions import nightly_retrain
from fraud_pipeline_tests.conftest import SMALL_WORLD

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next(
    (
        path
        for path in (
            shutil.which("chromium"),
            shutil.which("chromium-browser"),
            shutil.which("google-chrome"),
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/snap/bin/chromium",
        )
        if path and os.path.exists(path)
    ),
    None,
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary installed")

LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"
LOCATIONS = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterUI:
    """A running `dagster dev` (webserver + daemon) and a GraphQL client for it."""

    def __init__(self, url: str, data_dir: Path, log: Path) -> None:
        self.url, self.data_dir, self.log = url, data_dir, log

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]

    def location(self) -> tuple[str, str]:
        repository = self.graphql(LOCATIONS)["repositoriesOrError"]["nodes"][0]
        return repository["location"]["name"], repository["name"]

    def launch(self, run_config: dict, tags: dict, job: str = "fraud_pipeline_job") -> str:
        location, repository = self.location()
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": job,
            },
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.graphql(LAUNCH, {"params": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def wait(self, run_ids: list[str], timeout: float = 600) -> dict[str, dict]:
        deadline, runs = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            runs = {run_id: self.graphql(RUN, {"id": run_id})["runOrError"] for run_id in run_ids}
            if all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in runs.values()):
                return runs
            time.sleep(2)
        raise AssertionError(f"runs did not finish in {timeout} s: {runs}\n{self.log.read_text()[-3000:]}")


def _tasks_quiet_dev() -> str:
    """The warning filter ``tasks.py ui`` gives ``dagster dev``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks_for_the_ui", PROJECT_ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.QUIET_DEV


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory):
    """`dagster dev` on 127.0.0.1 and a free port, against a temporary DAGSTER_HOME and data folder."""
    home, data_dir = tmp_path_factory.mktemp("dagster_home"), tmp_path_factory.mktemp("data")
    shutil.copy(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    port, log = _free_port(), home / "dagster_dev.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FRAUD_PIPELINE_DATA_DIR": str(data_dir),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONWARNINGS": _tasks_quiet_dev(),  # as `tasks.py ui` starts it
    }
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ui = DagsterUI(f"http://127.0.0.1:{port}", data_dir, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if ui.graphql(LOCATIONS)["repositoriesOrError"]["nodes"]:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                f"dagster dev did not start:\n{log.read_text()[-3000:]}"
            )
            time.sleep(1)
        yield ui
    finally:
        # the webserver, daemon and code servers share the session: stop them all, then make sure (their graceful
        # shutdown outlasts any short wait, and nothing of this temporary instance needs it)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()


def nightly_run_config(day: datetime) -> dict:
    """The nightly schedule's run config for a tick, with the small test world."""
    request = nightly_retrain(
        dg.build_schedule_context(scheduled_execution_time=day.replace(hour=2, tzinfo=timezone.utc))
    )
    config = request.run_config
    config["resources"]["world"] = {"config": {"n_transactions": SMALL_WORLD}}
    return config


def visible_text(ui: DagsterUI, path: str, screenshots: Path, name: str, height: int = 1000) -> str:
    """The page's text after its scripts ran, and a screenshot of it."""
    return text_of(page_dom(ui, path, screenshots, name, height))


def text_of(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def page_dom(ui: DagsterUI, path: str, screenshots: Path, name: str, height: int = 1000) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size=1400,{height}",
        f"--user-data-dir={screenshots / 'profile'}",
        "--virtual-time-budget=20000",
    ]
    # one browser for both: the screenshot and the DOM are of the same load, and Chromium starts once per page
    return subprocess.run(
        [*flags, f"--screenshot={screenshots / (name + '.png')}", "--dump-dom", f"{ui.url}/{path}"],
        capture_output=True,
        timeout=120,
        check=True,
        text=True,
    ).stdout


def test_two_runs_launched_together_queue_and_the_ui_shows_the_graph_and_check_results(dagster_ui):
    # the same night launched twice at once (a double click, a manual run beside the schedule's)
    night = datetime(2025, 7, 1)
    run_ids = [dagster_ui.launch(nightly_run_config(night), {"as_of": f"{night:%Y-%m-%d}"}) for _ in range(2)]
    runs = dagster_ui.wait(run_ids)
    assert [runs[r]["status"] for r in run_ids] == ["SUCCESS", "SUCCESS"], dagster_ui.log.read_text()[-3000:]
    assert "SupersessionWarning" not in dagster_ui.log.read_text(), "tasks.py ui's dagster dev still warns"
    first, second = sorted(runs.values(), key=lambda run: run["startTime"])
    assert second["startTime"] >= first["endTime"], "the runs interleaved instead of queueing"

    # the file is whole and consistent: every table from the same night, nothing missing
    with duckdb.connect(str(dagster_ui.data_dir / "warehouse.duckdb"), read_only=True) as con:
        one = lambda sql: con.execute(sql).fetchone()  # noqa: E731
        n_transactions, newest = one("SELECT count(*), max(event_time) FROM transactions")
        assert night - timedelta(days=1) <= newest < night
        assert one("SELECT count(*) FROM transaction_features")[0] == n_transactions
        assert one("SELECT count(*) FROM transaction_labels")[0] == n_transactions
        assert (
            one(
                "SELECT count(*) FROM training_set WHERE transaction_id NOT IN (SELECT transaction_id FROM transaction_features)"
            )[0]
            == 0
        )
        assert (
            one("SELECT count(*) FROM evaluation_scores")[0]
            == one("SELECT count(*) FROM training_set WHERE split = 'test'")[0]
        )
    champion = json.loads((dagster_ui.data_dir / "registry" / "champion.json").read_text())
    assert (dagster_ui.data_dir / "registry" / "models" / champion["version"] / "report.html").exists()

    dagster_ui.graphql("mutation { setNuxSeen }")  # the first-visit newsletter dialog would cover the page
    location, _ = dagster_ui.location()
    screenshots = Path(tempfile.mkdtemp(prefix="fraud_pipeline_ui_"))
    print(f"screenshots in {screenshots}")

    lineage = visible_text(dagster_ui, "asset-groups", screenshots, "asset_graph")
    for group in ("ingestion", "labels", "features", "training", "evaluation", "monitoring", "deployment"):
        assert group in lineage, lineage[:2000]
    # the graph draws only the nodes in view: a small group shows every asset name
    training = visible_text(dagster_ui, f"locations/{location}/asset-groups/training", screenshots, "training_group")
    for asset in ("training_windows", "training_set", "fraud_model"):
        assert asset in training, training[:2000]
    catalog = visible_text(dagster_ui, "assets", screenshots, "asset_catalog", height=2000)
    for asset in (
        "label_delay_profile",
        "transaction_features",
        "model_evaluation",
        "evaluation_report",
        "deployed_model",
    ):
        assert asset in catalog, catalog[:2000]
    assert "Materialized" in catalog
    check = visible_text(
        dagster_ui,
        "assets/deploy_gate?view=checks&checkDetail=cost_beats_baselines",
        screenshots,
        "check_cost_beats_baselines",
    )
    assert re.search(r"cost_beats_baselines\s+Succeeded", check), check[:2000]
    assert "This is a blocking asset check" in check and "Passed" in check
    assert all(
        (screenshots / f"{name}.png").stat().st_size > 10_000
        for name in ("asset_graph", "training_group", "asset_catalog", "check_cost_beats_baselines")
    )


def test_a_blocked_night_shows_its_decision_and_the_blocked_candidate_has_its_report(dagster_ui):
    """Another night with an impossible cost margin: the run fails on the gate's check only, deploy_gate says
    why with the numbers, the candidate's report is written, and the champion stays."""
    registry = dagster_ui.data_dir / "registry"
    champion = json.loads((registry / "champion.json").read_text())
    night = datetime(2025, 6, 24)
    config = nightly_run_config(night)
    config["resources"]["gates"] = {"config": {"cost_margin": 0.99}}
    run_id = dagster_ui.launch(config, {"as_of": f"{night:%Y-%m-%d}"})
    assert dagster_ui.wait([run_id])[run_id]["status"] == "FAILURE", dagster_ui.log.read_text()[-3000:]
    assert json.loads((registry / "champion.json").read_text()) == champion
    blocked = [json.loads(line) for line in (registry / "history.jsonl").read_text().splitlines()][-1]
    assert blocked["event"] == "blocked" and "cost_beats_baselines" in blocked["blocked_by"]
    candidate = blocked["version"]
    assert candidate != champion["version"]
    assert (registry / "models" / candidate / "report.html").exists(), "the blocked candidate has no report"
    assert not (registry / "models" / candidate / "bundle.json").exists(), "a blocked candidate was deployed"

    screenshots = Path(tempfile.mkdtemp(prefix="fraud_pipeline_ui_blocked_"))
    print(f"screenshots in {screenshots}")
    gate = visible_text(dagster_ui, "assets/deploy_gate", screenshots, "deploy_gate_blocked", height=2000)
    assert f"candidate {candidate} blocked by " in gate, gate[:3000]
    assert "cost_beats_baselines (cost_vs_approve_all" in gate and " > bound " in gate
    assert f"champion {champion['version']} stays" in gate and "Latest materialization" in gate
    check = visible_text(
        dagster_ui,
        "assets/deploy_gate?view=checks&checkDetail=cost_beats_baselines",
        screenshots,
        "check_cost_beats_baselines_failed",
    )
    assert re.search(r"cost_beats_baselines\s+Failed", check), check[:2000]
    report = visible_text(
        dagster_ui, "assets/evaluation_report", screenshots, "report_of_blocked_candidate", height=2000
    )
    assert candidate in report and "Latest materialization" in report, report[:3000]
    assert all(
        (screenshots / f"{name}.png").stat().st_size > 10_000
        for name in ("deploy_gate_blocked", "check_cost_beats_baselines_failed", "report_of_blocked_candidate")
    )


class Beacon:
    """A loopback HTTP server that records every request: a hostile image or link in the UI would reach it."""

    def __init__(self) -> None:
        import http.server
        import threading

        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the handler's API)
                requests.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_text_from_the_data_renders_inert_in_the_ui(dagster_ui, tmp_path):
    """A file name and cells built to fetch a beacon, landed from a day folder and read in the UI."""
    beacon = Beacon()
    try:
        url = f"http://127.0.0.1:{beacon.port}"
        hostile = {
            "image": f"![x]({url}/markdown-image)",
            "html": f'<img src="{url}/html-image" onerror="fetch(\'{url}/onerror\')">',
            "link": "[click](javascript:alert(1))",
        }
        day = tmp_path / "incoming" / "2025-03-01"
        day.mkdir(parents=True)
        (day / "transactions_<img src=x onerror=alert(1)>_![f](x).csv").write_text(
            "transaction_id,user_id,merchant_id,event_time,amount,channel\n"
            + "".join(f"{i},10,100,2025-03-01T0{i}:00:00Z,{value},x\n" for i, value in enumerate(hostile.values(), 1))
            + "4,10,100,2025-03-01T05:00:00Z,5.00,x\n"
        )
        run_id = dagster_ui.launch(
            {"resources": {"source": {"config": {"folder": str(tmp_path / "incoming")}}}},
            {"dagster/partition": "2025-03-01"},
            job="ingestion_job",
        )
        assert dagster_ui.wait([run_id], timeout=300)[run_id]["status"] == "SUCCESS", dagster_ui.log.read_text()[-3000:]
        screenshots = Path(tempfile.mkdtemp(prefix="fraud_pipeline_ui_hostile_"))
        print(f"screenshots in {screenshots}")
        doms = {
            "asset": page_dom(dagster_ui, "assets/landed_files", screenshots, "landed_files", height=2000),
            "run": page_dom(dagster_ui, f"runs/{run_id}", screenshots, "landing_run", height=2000),
        }
        rendered = " ".join(text_of(dom) for dom in doms.values())
        # the Markdown tables were drawn (as text), so the test saw what a user sees
        assert "not a number (![x](" in rendered, rendered[:3000]
        for name, dom in doms.items():
            tags = re.findall(r"<(img|a|iframe|script)\b[^>]*>", dom, flags=re.I)
            assert not [
                t for t in re.findall(r"<(?:img|a|iframe)\b[^>]*>", dom, flags=re.I) if str(beacon.port) in t
            ], (
                name,
                tags,
            )
            assert "javascript:alert" not in " ".join(re.findall(r'href="[^"]*"', dom)), name
        time.sleep(1)
        assert beacon.requests == [], beacon.requests
    finally:
        beacon.close()
