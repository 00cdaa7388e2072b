"""Which executor runs the steps of a run, chosen by MMM_EXECUTOR (see README "Beyond one machine").

The scale-out packages are optional extras, imported only when selected, so a
laptop install stays small and a missing extra fails at load naming the setting.
"""

from __future__ import annotations

import importlib
import os

import dagster as dg

from mmm_pipeline.settings import ConfigError

EXECUTORS = ("multiprocess", "in_process", "k8s", "celery")


def _extra(module: str, extra: str, value: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"MMM_EXECUTOR={value} needs the {module} package: pip install '.[{extra}]'"
        ) from exc


def executor_from_env(env: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    env = os.environ if env is None else env
    name = env.get("MMM_EXECUTOR") or "multiprocess"
    if name == "multiprocess":
        # One step per process; the duckdb and model_fit pools keep warehouse access serial.
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        # Each step in its own pod, in the namespace and with the volumes of the run launcher
        # (deploy/k8s/dagster.yaml). The default (multiprocess) already gives one pod per market run.
        return _extra("dagster_k8s", "k8s", name).k8s_job_executor
    if name == "celery":
        if not env.get("MMM_CELERY_BROKER"):
            raise ConfigError("MMM_EXECUTOR=celery needs MMM_CELERY_BROKER (the Celery broker URL, e.g. "
                              "pyamqp://guest@rabbitmq//)")
        celery = _extra("dagster_celery", "celery", name)
        return celery.celery_executor.configured(
            {"broker": {"env": "MMM_CELERY_BROKER"},
             "backend": env.get("MMM_CELERY_BACKEND") or "rpc://",
             "config_source": {"worker_prefetch_multiplier": 1}},
            name="celery",
        )
    raise ConfigError(f"MMM_EXECUTOR={name!r} is not an executor; use one of {EXECUTORS}")
