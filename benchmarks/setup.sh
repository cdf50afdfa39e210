#!/usr/bin/env bash
# What `make bench` needs besides the .venv: Postfix's smtp-sink and smtp-source (Debian's postfix
# package, installed unconfigured so no mail daemon starts) and nodemailer under bench/ (when node
# is there). Installs only what is missing; everything it cannot get is reported and skipped by
# benchmarks/bench_send.py with a note.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/smtp-sink ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench: installing postfix (for smtp-sink and smtp-source; no mail daemon is started)"
    # "No configuration": postfix's postinst then neither writes main.cf nor starts postfix.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
      # Debian's way to tell package scripts not to start services (removed again below).
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null \
      || echo "bench: postfix could not be installed; the engine runs against aiosmtpd instead"
    [ "$made_policy" = 1 ] && rm -f "$policy"
  else
    echo "bench: /usr/sbin/smtp-sink is missing (apt-get install postfix as root); using aiosmtpd instead"
  fi
fi

if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -d bench/node_modules/nodemailer ]; then
    echo "bench: installing nodemailer under bench/"
    mkdir -p bench
    (cd bench && npm install --silent --no-audit --no-fund --no-save nodemailer@6 >/dev/null) \
      || echo "bench: nodemailer could not be installed; its rows are skipped"
  fi
else
  echo "bench: node is not installed; the nodemailer rows are skipped"
fi
exit 0
