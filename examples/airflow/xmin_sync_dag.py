"""Keep a vendor's tables in the warehouse up to date with xmin-sync, from Airflow.

One task per table of the config, each running

    xmin-sync sync --config sync.yaml --table <table> --json

BashOperator fails the task when the command exits non-zero (1: the table's
run failed, 2: bad input), so Airflow's retries and alerts apply per table,
and the task's last stdout line (the run's JSON result) is pushed to XCom.
Every run is also recorded in the target's run history: `xmin-sync serve`
shows them on a status page with Prometheus metrics.

Connections: SOURCE_POSTGRES_CONN_ID and TARGET_POSTGRES_CONN_ID name Airflow
connections; the task exports their URIs as AIRFLOW_CONN_<ID> (as Airflow
itself does for connections defined in the environment), which xmin-sync
reads when the config gives no URL. So the config can leave `source:` and
`target:` out, and no secret is written in the DAG or the config.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta

import pendulum
import yaml
from airflow import DAG
from airflow.operators.bash import BashOperator

CONFIG = os.environ.get("XMIN_SYNC_CONFIG", "/opt/xmin-sync/sync.yaml")
XMIN_SYNC = os.environ.get("XMIN_SYNC_BIN", "xmin-sync")
SOURCE_CONN_ID = os.environ.get("SOURCE_POSTGRES_CONN_ID", "vendor_fds")
TARGET_CONN_ID = os.environ.get("TARGET_POSTGRES_CONN_ID", "warehouse")


def config_tables(path: str) -> list[str]:
    """The tables of the config, by source name (read when the DAG is parsed: a local file)."""
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    return [t["source"] for t in config["tables"]]


def connection_env(conn_id: str) -> dict[str, str]:
    # Rendered when the task runs ({{ conn.<id> }} is Airflow's template
    # access to connections), not when the DAG file is parsed.
    return {f"AIRFLOW_CONN_{conn_id.upper()}": "{{ conn.%s.get_uri() }}" % conn_id}


with DAG(
    dag_id="xmin_sync",
    description="xmin-sync: copy changed rows of vendor tables into the warehouse",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # A table's runs never overlap anyway (xmin-sync locks each target
    # table); one DAG run at a time keeps the schedule simple to read.
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
    },
    tags=["xmin-sync"],
) as dag:
    for table in config_tables(CONFIG):
        BashOperator(
            task_id="sync__" + "".join(c if c.isalnum() else "_" for c in table),
            bash_command=" ".join(
                shlex.quote(a)
                for a in [XMIN_SYNC, "sync", "--config", CONFIG, "--table", table, "--json"]
            ),
            env={
                "SOURCE_POSTGRES_CONN_ID": SOURCE_CONN_ID,
                "TARGET_POSTGRES_CONN_ID": TARGET_CONN_ID,
                **connection_env(SOURCE_CONN_ID),
                **connection_env(TARGET_CONN_ID),
                # Logs go to stderr as JSON lines; stdout carries the result.
                "LOG_LEVEL": "info",
            },
            append_env=True,
        )
