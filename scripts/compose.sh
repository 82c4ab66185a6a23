#!/usr/bin/env bash
# make down / ps / logs: docker compose with the same files, images and fallbacks as `make up`.
#   scripts/compose.sh ps          COMPOSE_FILES="compose/docker-compose.yml compose/docker-compose.vendor.yml" ...
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
find_compose
load_images_env
compose "$@"
