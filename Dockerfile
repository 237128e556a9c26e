# syntax=docker/dockerfile:1
# spoolerd in a container.   docker build -t spoolerd .
#   docker run -d --name spoolerd -v spoolerd-state:/var/lib/spoolerd spoolerd
#   docker exec spoolerd spoolerctl flush
# Configuration: mount a file on /etc/spoolerd/spoolerd.toml and/or set SPOOLERD__SECTION__KEY variables.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY spoolerd/ spoolerd/
COPY stores/ stores/
COPY transports/ transports/
# the project's wheel and every dependency's, with the optional parts a container is used for (the
# PostgreSQL store and DKIM signing), so the runtime stage installs offline
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres,dkim]'

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 spoolerd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/spoolerd --shell /usr/sbin/nologin spoolerd \
    && install -d -o spoolerd -g spoolerd -m 0750 /var/lib/spoolerd /run/spoolerd \
    && install -d -m 0755 /etc/spoolerd
COPY --from=build /wheels /wheels
# spoolerd-sendmail doubles as /usr/sbin/sendmail for programs in the image (and as mailq, newaliases).
# DL3013 (pin versions): the only index is /wheels, built from this source in the stage above.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels 'spoolerd[postgres,dkim]' \
    && rm -rf /wheels \
    && ln -s /usr/local/bin/spoolerd-sendmail /usr/sbin/sendmail \
    && ln -s /usr/sbin/sendmail /usr/bin/mailq \
    && ln -s /usr/sbin/sendmail /usr/bin/newaliases
COPY config/container.toml /etc/spoolerd/spoolerd.toml
ENV STATE_DIRECTORY=/var/lib/spoolerd \
    RUNTIME_DIRECTORY=/run/spoolerd \
    SPOOLERD_CONFIG=/etc/spoolerd/spoolerd.toml \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/spoolerd", "/run/spoolerd"]
USER 10001:10001
# spoolerd handles SIGTERM itself, also as PID 1: in-flight sends finish, then it exits 0
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 CMD ["spoolerctl", "status"]
ENTRYPOINT ["spoolerd"]
CMD ["run"]
