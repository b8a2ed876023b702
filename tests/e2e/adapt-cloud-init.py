#!/usr/bin/env python3
"""Prints conf/cloud-init.yaml adapted for the end-to-end test, changing only the endpoint and
the credential: the share's URL (Source=) becomes the emulator's, and the credential file holds
a SAS token for it instead of managed_identity = yes.

    adapt-cloud-init.py CLOUD_INIT_YAML SHARE_URL SAS_TOKEN [--no-source]

--no-source drops the Source= line (the agent then mounts nothing and /srv/workspace is a plain
directory), for runs without the azfilesfs mount step. Every replaced line must occur exactly
once, so a changed cloud-init.yaml fails here loudly rather than testing something else."""
import sys

import yaml


def replace_once(text, old, new):
    n = text.count(old)
    if n != 1:
        sys.exit(f"adapt-cloud-init: expected one {old!r} in the file, found {n}")
    return text.replace(old, new)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    no_source = "--no-source" in sys.argv[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    path, url, sas = args
    text = open(path, encoding="utf-8").read()
    source = "Source=https://ACCOUNT.file.core.windows.net/SHARE\n"
    text = replace_once(text, source, "" if no_source else f"Source={url}\n")
    text = replace_once(text, "      managed_identity = yes\n", f"      sas_token = {sas}\n")
    if not text.startswith("#cloud-config\n"):
        sys.exit("adapt-cloud-init: the file must start with #cloud-config")
    yaml.safe_load(text)  # still valid YAML
    sys.stdout.write(text)


main()
