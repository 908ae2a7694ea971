#!/bin/sh
# The benchmark's load generator and stand-in upstream: h2load (nghttp2-client) and nginx (nginx-light).
# Installs whichever is missing with apt-get (Debian, as root); fails with a clear message otherwise.
# Installing never starts a system nginx: service starts are refused while apt-get runs.
set -eu

PACKAGES="nghttp2-client nginx-light"

have_h2load() { command -v h2load >/dev/null 2>&1; }
have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

if have_h2load && have_nginx; then
    exit 0
fi

missing=""
have_h2load || missing="$missing h2load (nghttp2-client)"
have_nginx || missing="$missing nginx (nginx-light)"

fail() {
    echo "bench/tools.sh: missing:$missing" >&2
    echo "bench/tools.sh: $1" >&2
    echo "bench/tools.sh: install them yourself, e.g. apt-get install -y --no-install-recommends $PACKAGES" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "this is not a Debian-like system (no apt-get)"
[ "$(id -u)" -eq 0 ] || fail "installing packages needs root"

echo "bench/tools.sh: installing$missing" >&2
# policy-rc.d exit code 101 = "action forbidden": the package's service is not started (it would listen on
# port 80 on every interface). Only put in place when the system has none, and removed afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=yes
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || fail "apt-get update failed"
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $PACKAGES || fail "apt-get install failed"

have_h2load || fail "h2load is still missing after installing nghttp2-client"
have_nginx || fail "nginx is still missing after installing nginx-light"
nginx_program=$(command -v nginx || echo /usr/sbin/nginx)
echo "bench/tools.sh: installed $(h2load --version | head -n 1), $("$nginx_program" -v 2>&1)" >&2
