#!/usr/bin/env bash
# Copies the source tree into DEST (an empty directory) for a package build: the tracked files
# and the untracked ones git does not ignore, as they are in the working tree (files deleted in
# the working tree but still in the index are skipped), or with PKG_SOURCE=head the last commit.
#
#   packaging/copy-tree.sh DEST
set -euo pipefail
dest=$1
cd "$(dirname "$0")/.."
if [ "${PKG_SOURCE:-worktree}" = head ]; then
        git archive --format=tar HEAD | tar -C "$dest" -xf -
else
        git ls-files -z --cached --others --exclude-standard |
                while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
                tar --null -T - -cf - | tar -C "$dest" -xf -
fi
