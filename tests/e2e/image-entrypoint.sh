#!/usr/bin/env bash
# The official image's /entrypoint (apache/airflow scripts/docker/entrypoint_prod.sh), cut down to
# what decides how signals reach Airflow: it runs under `dumb-init --` (the image's ENTRYPOINT),
# checks the database first, runs `bash`/`python` as given and strips a leading `airflow`, then
# replaces itself with `airflow "$@"`, so dumb-init's direct child is the Airflow process.
# Left out: the OpenShift user fix-up, the root PYTHONPATH, _AIRFLOW_DB_MIGRATE/_AIRFLOW_WWW_USER_CREATE,
# _PIP_ADDITIONAL_REQUIREMENTS and the broker wait (it needs `nc`); none of them forks a process
# that outlives the script.
set -euo pipefail

umask 0002

CONNECTION_CHECK_MAX_COUNT=${CONNECTION_CHECK_MAX_COUNT:=20}
CONNECTION_CHECK_SLEEP_TIME=${CONNECTION_CHECK_SLEEP_TIME:=3}

if [[ "${CONNECTION_CHECK_MAX_COUNT}" -gt "0" ]]; then
    countdown="${CONNECTION_CHECK_MAX_COUNT}"
    until airflow db check >/dev/null 2>&1; do
        countdown=$((countdown - 1))
        if [[ ${countdown} == 0 ]]; then
            echo "ERROR! Maximum number of retries (${CONNECTION_CHECK_MAX_COUNT}) reached." >&2
            exit 1
        fi
        sleep "${CONNECTION_CHECK_SLEEP_TIME}"
    done
fi

case "${1:-}" in
    bash | python) exec "$@" ;;  # run as given (the image's `bash` is /bin/bash, `python` its Python)
    airflow) shift ;;            # `airflow scheduler` and `scheduler` mean the same
esac

exec airflow "$@"
