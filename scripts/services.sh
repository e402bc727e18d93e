#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL answer on localhost, starting them if they are installed
# but stopped. Fails loudly (exit 1) when either cannot be reached: the tests never skip.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # name port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$2"; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.5
  done
}

if ! port_open 5672; then
  echo "services: RabbitMQ is not answering on 127.0.0.1:5672; starting it"
  rabbitmq-server -detached || true
  if ! wait_port rabbitmq 5672 90; then
    echo "services: FAILED: RabbitMQ did not come up on 127.0.0.1:5672" >&2
    exit 1
  fi
  rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

# The management API (port 15672): the hub makes ministries' users and permissions and reads
# queue statistics through it (hub.subscriptions). Enabling an enabled plugin changes nothing.
if ! port_open 15672; then
  rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || true
  if ! wait_port management 15672 60; then
    echo "services: FAILED: RabbitMQ's management API did not come up on 127.0.0.1:15672" >&2
    exit 1
  fi
fi

if ! port_open 5432; then
  echo "services: PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if ! wait_port postgresql 5432 60; then
    echo "services: FAILED: PostgreSQL did not come up on 127.0.0.1:5432" >&2
    exit 1
  fi
fi
echo "services: RabbitMQ and PostgreSQL are up"
