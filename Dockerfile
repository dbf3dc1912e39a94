# sfrelay as a container image. Heroku builds it from heroku.yml on the
# container stack (see docs/heroku.md); `docker build -t sfrelay .` builds
# the same image anywhere else.
#
# The first stage compiles with the project's Makefile (`make install`);
# the final image holds the binary and the shared libraries it links to,
# no compiler. Every step is a command of scripts/heroku-build.sh, so the
# steps can be run and checked without Docker
# (scripts/heroku-image-check.sh runs this file's steps in chroots).

FROM debian:bookworm-slim AS build
WORKDIR /src
# The script alone first: the package layer is reused until it changes.
COPY scripts/heroku-build.sh scripts/heroku-build.sh
RUN scripts/heroku-build.sh build-deps
COPY . .
RUN scripts/heroku-build.sh build /out

FROM debian:bookworm-slim
# Heroku does not patch a container's operating system: the packages are
# those of the day the image was built. A new date here makes the next
# build install them afresh, even where earlier layers are cached.
ARG PACKAGES_REFRESHED=2026-11-26
COPY --from=build /out/ /
COPY scripts/heroku-build.sh /tmp/heroku-build.sh
RUN /tmp/heroku-build.sh runtime-deps && rm /tmp/heroku-build.sh && \
	useradd --system --no-create-home --shell /usr/sbin/nologin sfrelay
# Heroku never runs a container as root; neither does this image elsewhere.
USER sfrelay
# Used only by the file checkpoint (no DATABASE_URL): a directory any user
# can create. A dyno's disk is wiped at every restart, which is why Heroku
# deployments keep their checkpoints in Postgres.
ENV SFRELAY_STATE_DIR=/tmp/sfrelay
CMD ["sfrelay"]
