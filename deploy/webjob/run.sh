#!/bin/sh
# Entry point of the continuous WebJob "nightshift-worker" (App Service on Linux). App
# Service runs the job folder's run.* file and starts it again when it exits
# (WEBJOBS_RESTART_TIME). Layout of the job folder (deploy/webjob/package.sh builds it):
#
#   App_Data/jobs/continuous/nightshift-worker/run.sh        this file
#   App_Data/jobs/continuous/nightshift-worker/handler       linux/amd64 static build of ./handler
#   App_Data/jobs/continuous/nightshift-worker/host.json     the queue settings the worker reads
#   App_Data/jobs/continuous/nightshift-worker/settings.job  is_singleton, stopping_wait_time
#
# The worker drains on SIGTERM. App Service announces a stop by creating the file named in
# WEBJOBS_SHUTDOWN_FILE and kills the job stopping_wait_time seconds later, so this script
# turns that file, and any TERM or INT it receives itself, into one SIGTERM for the worker,
# then waits for the worker's exit and exits with its status.
set -u
cd "$(dirname "$0")" || exit 1
# The zip may lose the executable bit.
[ -x ./handler ] || chmod +x ./handler 2>/dev/null || true
# The queue settings of the job folder's host.json, as the Functions host would read them.
NIGHTSHIFT_WORKER_HOST_JSON="${NIGHTSHIFT_WORKER_HOST_JSON:-$PWD/host.json}"
export NIGHTSHIFT_WORKER_HOST_JSON

./handler worker "$@" &
pid=$!
stopped=0
stop() {
	if [ "$stopped" -eq 0 ]; then
		stopped=1
		kill -TERM "$pid" 2>/dev/null || true
	fi
}
trap stop TERM INT

if [ -n "${WEBJOBS_SHUTDOWN_FILE:-}" ]; then
	while kill -0 "$pid" 2>/dev/null; do
		if [ -e "$WEBJOBS_SHUTDOWN_FILE" ]; then
			stop
			break
		fi
		sleep 1
	done
fi

# wait returns early when a trapped signal arrives: wait again while the worker lives.
rc=0
while :; do
	wait "$pid"
	rc=$?
	kill -0 "$pid" 2>/dev/null || break
done
exit "$rc"
