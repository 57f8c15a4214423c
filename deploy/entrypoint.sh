#!/bin/sh
# The image's entrypoint: one role of the gateway, or any command. Each role ends in `exec`, so the
# server replaces this shell: it is the container's main process and receives SIGTERM itself.
set -eu
cd "$(dirname "$0")/.."

usage() {
	cat >&2 <<'USAGE'
usage: entrypoint.sh ROLE [ARGS...] | manage.py ARGS... | COMMAND [ARGS...]
roles (ARGS are added to the role's command line):
  web      the HTTP API and admin: gunicorn on HOST:PORT (WEB_CONCURRENCY processes, WEB_THREADS threads)
  ws       the WebSockets: `manage.py serve --no-worker` (uvicorn) on HOST:PORT
  worker   `manage.py run_worker` (name WORKER_NAME or the hostname, WORKER_CAPACITY sessions)
  migrate  apply the database migrations, create the first admin account (DJANGO_SUPERUSER_*), exit
  all      migrate, then the all-in-one `manage.py serve` (web, WebSockets and a worker) on HOST:PORT
USAGE
}

migrate() {
	python manage.py migrate --noinput "$@"
	python manage.py ensure_superuser
}

role=${1:-all}
[ $# -eq 0 ] || shift
HOST=${HOST:-0.0.0.0}
PORT=${PORT:-8000}

case "$role" in
web)
	exec python -m gunicorn gateway.wsgi --bind "$HOST:$PORT" \
		--workers "${WEB_CONCURRENCY:-4}" --threads "${WEB_THREADS:-1}" --graceful-timeout 30 "$@"
	;;
ws)
	exec python manage.py serve --no-worker --host "$HOST" --port "$PORT" "$@"
	;;
worker)
	exec python manage.py run_worker --name "${WORKER_NAME:-}" --capacity "${WORKER_CAPACITY:-100}" "$@"
	;;
migrate)
	migrate "$@"
	;;
all)
	migrate
	exec python manage.py serve --host "$HOST" --port "$PORT" "$@"
	;;
manage.py)
	exec python manage.py "$@"
	;;
-h | --help | help)
	usage
	;;
*)
	if command -v "$role" >/dev/null 2>&1; then
		exec "$role" "$@"
	fi
	echo "entrypoint.sh: unknown role or command: $role" >&2
	usage
	exit 64
	;;
esac
