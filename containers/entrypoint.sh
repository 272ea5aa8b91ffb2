#!/bin/sh
# The image's entrypoint: `docker run pe-arena run configs/...` is `pe-arena run configs/...`; a command given as a
# program (node, sh, bash or a path), as pe-arena's job scripts give it, runs as it is.
case "$1" in
  node | sh | bash | */*) exec "$@" ;;
esac
exec node /opt/pe-arena/src/bin.mjs "$@"
